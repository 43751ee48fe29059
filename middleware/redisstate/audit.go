package redisstate

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/reattest/reattest/middleware"
)

// auditBatch bounds the records written in one round trip.
const auditBatch = 128

// Audit implements [middleware.Auditor]: it queues the decision for the
// namespace's audit stream (a Redis Stream capped at WithAuditMaxLen
// entries) and returns at once. A record holds the time, the replica, the
// route, mode, outcome and status, and when known the reason, Evidence
// format, the attester's identities (key hash, machine id, posture digest,
// subject) and the verification timing: never Evidence, a posture log or
// a key. Fields that are not known are left out.
// Requests served on a cached verdict are left out unless
// WithAuditCacheHits. When the queue is full the record is dropped and
// counted (Stats.AuditDropped): auditing never holds a request.
func (s *Store) Audit(_ context.Context, d middleware.Decision) {
	if !s.cfg.audit || (d.Outcome == middleware.OutcomeCacheHit && !s.cfg.auditCacheHits) {
		return
	}
	rec := make([]any, 0, 32)
	rec = append(rec,
		"at", s.cfg.now().UTC().Format(time.RFC3339Nano),
		"replica", s.cfg.replica,
		"route", d.Route,
		"mode", d.Mode.String(),
		"outcome", string(d.Outcome),
		"status", strconv.Itoa(d.Status))
	// Optional fields only when set (a reader takes a missing one as "").
	for _, f := range [...]struct{ k, v string }{
		{"reason", string(d.Reason)}, {"format", d.Format}, {"key", d.Attester.KeyHash},
		{"machine", d.Attester.MachineID}, {"posture", d.Attester.Posture}, {"subject", d.Attester.Subject}, {"kid", d.Attester.AttestationKeyID},
	} {
		if f.v != "" {
			rec = append(rec, f.k, f.v)
		}
	}
	if !d.VerifyStart.IsZero() {
		rec = append(rec, "verify_start", d.VerifyStart.UTC().Format(time.RFC3339Nano),
			"verify_us", strconv.FormatInt(d.VerifyDuration.Microseconds(), 10))
	}
	select {
	case s.audit <- rec:
	default:
		s.auditDropped.Add(1)
	}
}

// AuditCacheHits implements [middleware.Auditor]: true with
// WithAuditCacheHits (and the audit on).
func (s *Store) AuditCacheHits() bool { return s.cfg.audit && s.cfg.auditCacheHits }

// writeAudit writes queued records in batches until the Store closes,
// then what is left (for at most the operation timeout).
func (s *Store) writeAudit() {
	defer s.wg.Done()
	batch := make([][]any, 0, auditBatch)
	var lastLog time.Time
	write := func(ctx context.Context) {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
		defer cancel()
		_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, rec := range batch {
				p.XAdd(ctx, &redis.XAddArgs{Stream: s.keys.audit, MaxLen: s.cfg.auditMaxLen, Values: rec})
			}
			return nil
		})
		if err != nil {
			s.auditDropped.Add(uint64(len(batch)))
			if time.Since(lastLog) > 10*time.Second {
				lastLog = time.Now()
				s.logf(slog.LevelWarn, "reattest: audit records dropped", slog.Int("records", len(batch)), slog.String("cause", err.Error()))
			}
		} else {
			s.auditWritten.Add(uint64(len(batch)))
		}
		clear(batch)
		batch = batch[:0]
	}
	for {
		select {
		case rec := <-s.audit:
			batch = append(batch, rec)
		fill:
			for len(batch) < auditBatch {
				select {
				case rec := <-s.audit:
					batch = append(batch, rec)
				default:
					break fill
				}
			}
			write(s.ctx)
		case <-s.ctx.Done():
			for {
				select {
				case rec := <-s.audit:
					batch = append(batch, rec)
					if len(batch) == auditBatch {
						write(context.Background())
					}
				default:
					write(context.Background())
					return
				}
			}
		}
	}
}
