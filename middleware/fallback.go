package middleware

import (
	"container/list"
	"sync"
	"time"
)

// fallbackCache maps exporter-derived connection ids to connection state
// for servers without ConfigureServer. It is bounded: at most max entries
// (least recently used go first); an entry idle for longer than ttl
// expires, and one that holds no verdict expires once idle for longer than
// pendingTTL (its challenges have expired by then), so that connections
// that never attest do not keep state for long. An entry costs about
// fallbackEntryBytes (TestFallbackMemoryBounded measures it).
type fallbackCache struct {
	mu         sync.Mutex // guards all
	max        int
	ttl        time.Duration
	pendingTTL time.Duration
	ll         *list.List // of *fallbackEntry, most recent first
	items      map[string]*list.Element
}

// fallbackEntryBytes is the documented upper bound of the heap one
// fallback entry costs (an unattested connection with a pending challenge,
// or an attested one with its verdict).
const fallbackEntryBytes = 4 << 10

// maxEvictScan bounds the entries one lookup examines for expiry.
const maxEvictScan = 64

type fallbackEntry struct {
	id   string
	st   *connState
	used time.Time
}

func newFallbackCache(max int, ttl, pendingTTL time.Duration) *fallbackCache {
	return &fallbackCache{max: max, ttl: ttl, pendingTTL: min(pendingTTL, ttl), ll: list.New(), items: make(map[string]*list.Element)}
}

func (f *fallbackCache) get(id string, now time.Time) *connState {
	f.mu.Lock()
	defer f.mu.Unlock()
	// Expire from the least recently used end: entries idle past ttl, and
	// entries without a verdict idle past pendingTTL.
	e := f.ll.Back()
	for i := 0; e != nil && i < maxEvictScan; i++ {
		prev := e.Prev()
		fe := e.Value.(*fallbackEntry)
		idle := now.Sub(fe.used)
		if idle <= f.pendingTTL {
			break // every entry after this one is more recent
		}
		if idle > f.ttl || !fe.st.hasVerdict() { // mutation: fallback drops unattested
			f.ll.Remove(e)
			delete(f.items, fe.id)
		}
		e = prev
	}
	if e, ok := f.items[id]; ok {
		fe := e.Value.(*fallbackEntry)
		fe.used = now
		f.ll.MoveToFront(e)
		return fe.st
	}
	st := &connState{}
	f.items[id] = f.ll.PushFront(&fallbackEntry{id: id, st: st, used: now})
	for f.ll.Len() > f.max { // mutation: fallback cache bound
		last := f.ll.Back()
		f.ll.Remove(last)
		delete(f.items, last.Value.(*fallbackEntry).id)
	}
	return st
}

// len is the number of entries.
func (f *fallbackCache) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ll.Len()
}
