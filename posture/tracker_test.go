package posture_test

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/reattest/reattest/posture"
)

// Many goroutines change the posture while others snapshot it. Every
// snapshot must replay to its own head and state, subscribers must see
// every head in the order of the log, and the register must end at the
// last head. Run with -race.
func TestTrackerConcurrency(t *testing.T) {
	t.Parallel()
	tr, err := posture.NewTracker()
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu        sync.Mutex // guards delivered
		delivered [][]byte
	)
	cancel := tr.Subscribe(func(head []byte) {
		mu.Lock()
		delivered = append(delivered, head)
		mu.Unlock()
	})
	defer cancel()

	const writers, changes, readers = 8, 40, 4
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, writers*changes+readers)
	for w := range writers {
		wg.Go(func() {
			tool := fmt.Sprintf("tool-%d", w)
			perm := fmt.Sprintf("perm-%d", w)
			for i := range changes {
				var err error
				switch i % 5 {
				case 0:
					err = tr.EnableTool(ctx, posture.Tool{Name: tool, Digest: digest(fmt.Sprint(tool, i))})
				case 1:
					err = tr.SetFlag(ctx, "shared", fmt.Sprintf("%d-%d", w, i))
				case 2:
					err = tr.Grant(ctx, perm, "read", fmt.Sprint("s", i))
				case 3:
					err = tr.DisableTool(ctx, tool)
				case 4:
					err = tr.Revoke(ctx, perm)
				}
				if err != nil {
					errs <- fmt.Errorf("writer %d change %d: %w", w, i, err)
				}
			}
		})
	}
	stop := make(chan struct{})
	var rg sync.WaitGroup
	snapshots := make([]int, readers)
	for r := range readers {
		rg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				snap, err := tr.Snapshot()
				if err != nil {
					errs <- err
					return
				}
				st, err := posture.Verify(snap.Log, snap.Head)
				if err != nil {
					errs <- fmt.Errorf("snapshot does not replay to its head: %w", err)
					return
				}
				if !reflect.DeepEqual(st, snap.State) {
					errs <- fmt.Errorf("snapshot state differs from its replayed log:\n%#v\n%#v", st, snap.State)
					return
				}
				snapshots[r]++
			}
		})
	}
	wg.Wait()
	close(stop)
	rg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	snap, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	evs := rawEvents(t, snap)
	if len(evs) != writers*changes {
		t.Fatalf("log has %d events, want %d", len(evs), writers*changes)
	}
	// Every head, in the log's order, is what subscribers saw.
	mu.Lock()
	defer mu.Unlock()
	if len(delivered) != len(evs) {
		t.Fatalf("subscriber saw %d heads, want %d", len(delivered), len(evs))
	}
	for i := range evs {
		if want := headOf(evs[:i+1]...); !bytes.Equal(delivered[i], want) {
			t.Fatalf("notification %d: head %x, want %x (out of order?)", i, delivered[i], want)
		}
	}
	reg, _ := tr.Register().Read(ctx)
	if !bytes.Equal(reg, snap.Head) || !bytes.Equal(tr.Head(), snap.Head) {
		t.Fatalf("register %x, tracker head %x, snapshot head %x", reg, tr.Head(), snap.Head)
	}
	if snap.State.Flags["shared"] == "" || len(snap.State.Tools) != 0 || len(snap.State.Permissions) != 0 {
		t.Errorf("final state %+v", snap.State)
	}
	t.Logf("snapshots taken while writing: %v", snapshots)
}

func TestSubscribeDeliversHeads(t *testing.T) {
	tr, _ := posture.NewTracker()
	ctx := context.Background()
	var got [][]byte
	cancel := tr.Subscribe(func(head []byte) { got = append(got, head) })
	var calls2 int
	cancel2 := tr.Subscribe(func([]byte) { calls2++ })

	if err := tr.SetFlag(ctx, "a", "1"); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !bytes.Equal(got[0], tr.Head()) {
		t.Fatalf("after one change: %x, head %x", got, tr.Head())
	}
	got[0][0] ^= 0xff // the subscriber's copy is its own
	if bytes.Equal(got[0], tr.Head()) {
		t.Fatal("subscriber shares the tracker's head")
	}
	// A failed change notifies nobody.
	if err := tr.DisableTool(ctx, "nope"); err == nil {
		t.Fatal("disabling a tool that is not enabled succeeded")
	}
	if len(got) != 1 {
		t.Fatalf("failed change notified: %d", len(got))
	}
	cancel2()
	if err := tr.SetFlag(ctx, "a", "2"); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !bytes.Equal(got[1], tr.Head()) || calls2 != 1 {
		t.Fatalf("after second change: %d heads, second subscriber called %d times", len(got), calls2)
	}
	cancel()
	if err := tr.SetFlag(ctx, "a", "3"); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatal("cancelled subscriber still notified")
	}
}

// A subscriber may call the Tracker, even to change the posture; the
// nested change is reported after the one being delivered.
func TestSubscribeReentrant(t *testing.T) {
	tr, _ := posture.NewTracker()
	ctx := context.Background()
	var heads [][]byte
	var snapErr error
	tr.Subscribe(func(head []byte) {
		heads = append(heads, head)
		if _, err := tr.Snapshot(); err != nil {
			snapErr = err
		}
		if len(heads) == 1 {
			if err := tr.SetFlag(ctx, "reacted", "yes"); err != nil {
				snapErr = err
			}
		}
	})
	if err := tr.SetFlag(ctx, "a", "1"); err != nil {
		t.Fatal(err)
	}
	if snapErr != nil {
		t.Fatal(snapErr)
	}
	snap, _ := tr.Snapshot()
	evs := rawEvents(t, snap)
	if len(heads) != 2 || len(evs) != 2 {
		t.Fatalf("%d heads, %d events", len(heads), len(evs))
	}
	if !bytes.Equal(heads[0], headOf(evs[0])) || !bytes.Equal(heads[1], headOf(evs...)) {
		t.Fatal("nested change reported out of order")
	}
}

// A panicking subscriber does not stop later notifications.
func TestSubscribePanicRecovers(t *testing.T) {
	tr, _ := posture.NewTracker()
	ctx := context.Background()
	n := 0
	tr.Subscribe(func([]byte) {
		n++
		if n == 1 {
			panic("subscriber bug")
		}
	})
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("panic swallowed")
			}
		}()
		_ = tr.SetFlag(ctx, "a", "1")
	}()
	if err := tr.SetFlag(ctx, "a", "2"); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("subscriber called %d times, want 2", n)
	}
}

func TestTrackerRejects(t *testing.T) {
	ctx := context.Background()
	tr := agentTracker(t)
	before, _ := tr.Snapshot()
	cases := map[string]error{
		"disable-unknown": tr.DisableTool(ctx, "browser"),
		"revoke-unknown":  tr.Revoke(ctx, "admin"),
		"empty-name":      tr.SetFlag(ctx, "", "x"),
		"bad-digest":      tr.SetModel(ctx, posture.Model{Name: "m", Digest: posture.Digest{Alg: posture.AlgSHA256, Value: []byte{1}}}),
		"empty-scope":     tr.Grant(ctx, "p", ""),
		"too-many-scopes": tr.Grant(ctx, "p", manyScopes(posture.MaxScopes+1)...),
		"nonprintable":    tr.SetFlag(ctx, "f", "a\x07"),
		"template-nodig":  tr.SetTemplate(ctx, posture.Template{Name: "t"}),
	}
	for name, err := range cases {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	after, _ := tr.Snapshot()
	if !bytes.Equal(before.Log, after.Log) || !bytes.Equal(before.Head, after.Head) {
		t.Fatal("a refused change altered the log")
	}
	reg, _ := tr.Register().Read(ctx)
	if !bytes.Equal(reg, after.Head) {
		t.Fatal("a refused change extended the register")
	}
}

func manyScopes(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("scope-%03d", i)
	}
	return s
}

// A change that would make the log too large to encode is refused before
// the register moves, so the tracker can still produce Evidence.
func TestTrackerLogLimits(t *testing.T) {
	ctx := context.Background()
	tr, _ := posture.NewTracker()
	big := make([]string, posture.MaxScopes)
	for i := range big {
		big[i] = fmt.Sprintf("%03d-%s", i, strings.Repeat("s", posture.MaxNameLen-4))
	}
	var refused error
	for i := 0; i < 100 && refused == nil; i++ {
		refused = tr.Grant(ctx, fmt.Sprint("perm-", i), big...)
	}
	if refused == nil || !strings.Contains(refused.Error(), "larger than") {
		t.Fatalf("oversized log not refused: %v", refused)
	}
	snap, err := tr.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot after the refused change: %v", err)
	}
	if len(snap.Log) > posture.MaxLogLen {
		t.Fatalf("log of %d bytes", len(snap.Log))
	}
	reg, _ := tr.Register().Read(ctx)
	if !bytes.Equal(reg, snap.Head) {
		t.Fatal("register moved for the refused change")
	}
	if _, err := posture.Verify(snap.Log, snap.Head); err != nil {
		t.Fatal(err)
	}
	// A small change still fits.
	if err := tr.SetFlag(ctx, "f", "v"); err != nil {
		t.Fatalf("small change after the limit: %v", err)
	}

	// The event count limit.
	tr2, _ := posture.NewTracker()
	for i := range posture.MaxEvents {
		if err := tr2.SetFlag(ctx, "f", fmt.Sprint(i%2)); err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
	}
	if err := tr2.SetFlag(ctx, "f", "x"); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("event %d: %v", posture.MaxEvents+1, err)
	}
	if _, err := tr2.Snapshot(); err != nil {
		t.Fatal(err)
	}
}

// The tracker keeps its own copies: what callers do with the values they
// pass in or get back does not change the posture.
func TestTrackerCopies(t *testing.T) {
	ctx := context.Background()
	tr, _ := posture.NewTracker()
	d := digest("weights")
	want := d.String()
	if err := tr.SetModel(ctx, posture.Model{Name: "m", Digest: d}); err != nil {
		t.Fatal(err)
	}
	d.Value[0] ^= 0xff // the caller reuses its buffer
	if got := tr.State().Model.Digest.String(); got != want {
		t.Fatalf("caller's buffer changed the state: %s", got)
	}
	st := tr.State()
	st.Model.Digest.Value[0] ^= 0xff
	st.Model.Name = "x"
	if got := tr.State().Model; got.Digest.String() != want || got.Name != "m" {
		t.Fatal("changing State() changed the tracker")
	}
	snap, _ := tr.Snapshot()
	snap.State.Model.Digest.Value[1] ^= 0xff
	snap2, _ := tr.Snapshot()
	if !reflect.DeepEqual(snap2.State, tr.State()) || snap2.State.Model.Digest.String() != want {
		t.Fatal("changing a Snapshot's State changed the tracker")
	}
	if _, err := posture.Verify(snap2.Log, snap2.Head); err != nil {
		t.Fatal(err)
	}
}

func TestDisableToolMeasuresEnabledTool(t *testing.T) {
	ctx := context.Background()
	tr, _ := posture.NewTracker()
	_ = tr.EnableTool(ctx, posture.Tool{Name: "shell", Version: "1", Digest: digest("v1")})
	_ = tr.EnableTool(ctx, posture.Tool{Name: "shell", Version: "2", Digest: digest("v2")})
	if err := tr.DisableTool(ctx, "shell"); err != nil {
		t.Fatal(err)
	}
	snap, _ := tr.Snapshot()
	evs := mustDecode(t, snap.Log).Events()
	last := evs[len(evs)-1]
	if last.Op != posture.OpDisableTool || last.Component.ID.Version != "2" || !last.Component.Digest.Equal(digest("v2")) {
		t.Fatalf("disable event %+v, want version 2 and its digest", last)
	}
	if _, ok := snap.State.Tool("shell"); ok {
		t.Fatal("tool still enabled")
	}
}

func TestNewTrackerNeedsInitialRegister(t *testing.T) {
	reg, _ := posture.NewSoftwareRegister(crypto.SHA256)
	if err := reg.Extend(context.Background(), make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	if _, err := posture.NewTracker(posture.WithRegister(reg)); err == nil {
		t.Fatal("tracker over a used register")
	}
	if _, err := posture.NewSoftwareRegister(crypto.MD5); err == nil {
		t.Fatal("MD5 register")
	}
	if err := reg.Extend(context.Background(), make([]byte, 31)); err == nil {
		t.Fatal("extend with a short digest")
	}
}

// flakyRegister is a SoftwareRegister whose next Extend fails in a chosen
// way, like a hardware register behind a timeout.
type flakyRegister struct {
	*posture.SoftwareRegister
	mu   sync.Mutex
	mode string // "", "before" (fails, no extend), "after" (extends, then fails), "garbage"
}

func (f *flakyRegister) Extend(ctx context.Context, d []byte) error {
	f.mu.Lock()
	mode := f.mode
	f.mode = ""
	f.mu.Unlock()
	switch mode {
	case "before":
		return errors.New("device timeout")
	case "after":
		if err := f.SoftwareRegister.Extend(ctx, d); err != nil {
			return err
		}
		return errors.New("device timeout")
	case "garbage":
		_ = f.SoftwareRegister.Extend(ctx, make([]byte, 32))
		return errors.New("device error")
	}
	return f.SoftwareRegister.Extend(ctx, d)
}

func (f *flakyRegister) failNext(mode string) {
	f.mu.Lock()
	f.mode = mode
	f.mu.Unlock()
}

func TestTrackerRegisterFailure(t *testing.T) {
	ctx := context.Background()
	sw, _ := posture.NewSoftwareRegister(crypto.SHA256)
	reg := &flakyRegister{SoftwareRegister: sw}
	tr, err := posture.NewTracker(posture.WithRegister(reg))
	if err != nil {
		t.Fatal(err)
	}
	consistent := func(wantEvents int) {
		t.Helper()
		snap, err := tr.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := reg.Read(ctx)
		if !bytes.Equal(got, snap.Head) {
			t.Fatalf("register %x, log head %x", got, snap.Head)
		}
		if n := len(rawEvents(t, snap)); n != wantEvents {
			t.Fatalf("%d events, want %d", n, wantEvents)
		}
	}

	// The extend did not happen: the change fails and leaves no trace.
	reg.failNext("before")
	if err := tr.SetFlag(ctx, "a", "1"); err == nil {
		t.Fatal("failed extend reported success")
	}
	consistent(0)
	// The extend happened although the device reported an error: the log
	// follows the register.
	reg.failNext("after")
	if err := tr.SetFlag(ctx, "a", "2"); err != nil {
		t.Fatalf("extend that did happen: %v", err)
	}
	consistent(1)
	// The register holds something else: the tracker stops.
	reg.failNext("garbage")
	if err := tr.SetFlag(ctx, "a", "3"); !errors.Is(err, posture.ErrRegisterDiverged) {
		t.Fatalf("want ErrRegisterDiverged, got %v", err)
	}
	if err := tr.SetFlag(ctx, "a", "4"); !errors.Is(err, posture.ErrRegisterDiverged) {
		t.Fatalf("change after divergence: %v", err)
	}
	if _, err := tr.Snapshot(); !errors.Is(err, posture.ErrRegisterDiverged) {
		t.Fatalf("snapshot after divergence: %v", err)
	}
}

func TestZeroTrackerUsable(t *testing.T) {
	var tr posture.Tracker
	if err := tr.SetFlag(context.Background(), "fips_mode", "on"); err != nil {
		t.Fatal(err)
	}
	snap, err := tr.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	st, err := posture.Verify(snap.Log, tr.Head())
	if err != nil || st.Flags["fips_mode"] != "on" {
		t.Fatalf("zero tracker's log does not replay to its head: %v", err)
	}
	if tr.Register() == nil {
		t.Fatal("no register")
	}
}
