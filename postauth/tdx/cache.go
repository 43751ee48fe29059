package tdx

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Cache is an in-memory [CollateralSource] in front of another one (a
// [PCS]), keyed by FMSPC and PCK CA. An entry is served until its
// [Collateral.NextUpdate]; after that the next request fetches it again.
// Concurrent requests for the same platform share one fetch. If a fetch
// fails, the Cache serves the entry it has, even expired, and the
// Verifier decides (it refuses collateral past nextUpdate plus its grace:
// collateral_expired); with no entry it returns the failure. After a
// failure it does not ask the source again for the same platform for the
// failure backoff ([WithFailureBackoff]). It is safe for concurrent use.
//
// The Cache verifies nothing: every Verifier checks the collateral it
// gets, and remembers the signatures it already verified on the shared
// *Collateral.
type Cache struct {
	src CollateralSource
	cfg *cacheConfig

	mu      sync.Mutex
	entries map[cacheKey]*cacheEntry
}

var _ CollateralSource = (*Cache)(nil)

type cacheKey struct{ fmspc, ca string }

type cacheEntry struct {
	col      *Collateral
	failedAt time.Time
	failErr  error
	fetching chan struct{} // closed when the fetch in progress ends
}

// NewCache returns a Cache over src.
func NewCache(src CollateralSource, opts ...CacheOption) (*Cache, error) {
	if src == nil {
		return nil, errors.New("tdx: nil collateral source")
	}
	cfg, err := newCacheConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Cache{src: src, cfg: cfg, entries: make(map[cacheKey]*cacheEntry)}, nil
}

// Put stores collateral (for example loaded from disk or from a shared
// store) as if it had been fetched.
func (c *Cache) Put(col *Collateral) {
	if col == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := cacheKey{col.FMSPC(), col.CA()}
	e := c.entries[k]
	if e == nil {
		e = &cacheEntry{}
		c.entries[k] = e
	}
	e.col, e.failedAt, e.failErr = col, time.Time{}, nil
	c.evictLocked(k)
}

// Len is the number of platforms the Cache holds.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Collateral returns the cached collateral for fmspc and ca while it is
// before its nextUpdate, and otherwise fetches it (see [Cache]).
func (c *Cache) Collateral(ctx context.Context, fmspc, ca string) (*Collateral, error) {
	k := cacheKey{fmspc, ca}
	for {
		now := c.cfg.now()
		c.mu.Lock()
		e := c.entries[k]
		switch {
		case e != nil && e.col != nil && now.Before(e.col.NextUpdate()):
			c.mu.Unlock()
			return e.col, nil
		case e != nil && e.fetching != nil:
			wait := e.fetching
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		case e != nil && !e.failedAt.IsZero() && now.Sub(e.failedAt) < c.cfg.backoff:
			col, err := e.col, e.failErr
			c.mu.Unlock()
			if col != nil {
				return col, nil
			}
			return nil, err
		}
		done := make(chan struct{})
		if e == nil {
			e = &cacheEntry{fetching: done}
			c.entries[k] = e
			c.evictLocked(k)
		}
		e.fetching = done
		c.mu.Unlock()
		return c.fetch(ctx, k, e, done)
	}
}

func (c *Cache) fetch(ctx context.Context, k cacheKey, e *cacheEntry, done chan struct{}) (*Collateral, error) {
	col, err := c.src.Collateral(ctx, k.fmspc, k.ca)
	if err == nil && (col == nil || col.FMSPC() != k.fmspc || col.CA() != k.ca) {
		err = fmt.Errorf("tdx: the collateral source returned collateral for another platform")
		col = nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	defer close(done)
	e.fetching = nil
	if err != nil {
		if ctx.Err() == nil { // the caller's cancellation says nothing about the source
			e.failedAt, e.failErr = c.cfg.now(), err
		}
		if e.col != nil {
			return e.col, nil
		}
		return nil, err
	}
	e.col, e.failedAt, e.failErr = col, time.Time{}, nil
	return col, nil
}

// evictLocked drops entries beyond the size limit: those without
// collateral first, then the one that expires first. The entry keep (just
// added) and entries being fetched stay.
func (c *Cache) evictLocked(keep cacheKey) {
	for len(c.entries) > c.cfg.maxEntries {
		var victim *cacheKey
		var vt time.Time
		for k, e := range c.entries {
			if e.fetching != nil || k == keep {
				continue
			}
			var t time.Time // zero: no collateral, evicted first
			if e.col != nil {
				t = e.col.NextUpdate()
			}
			if victim == nil || t.Before(vt) {
				kk := k
				victim, vt = &kk, t
			}
		}
		if victim == nil {
			return
		}
		delete(c.entries, *victim)
	}
}
