package middleware

import (
	"container/list"
	"sync"
	"time"
)

// fallbackCache maps exporter-derived connection ids to connection state
// for servers without ConfigureServer. It is bounded (least recently used
// entries go first) and entries idle for longer than ttl expire.
type fallbackCache struct {
	mu    sync.Mutex // guards all
	max   int
	ttl   time.Duration
	ll    *list.List // of *fallbackEntry, most recent first
	items map[string]*list.Element
}

type fallbackEntry struct {
	id   string
	st   *connState
	used time.Time
}

func newFallbackCache(max int, ttl time.Duration) *fallbackCache {
	return &fallbackCache{max: max, ttl: ttl, ll: list.New(), items: make(map[string]*list.Element)}
}

func (f *fallbackCache) get(id string, now time.Time) *connState {
	f.mu.Lock()
	defer f.mu.Unlock()
	for e := f.ll.Back(); e != nil; {
		prev := e.Prev()
		if fe := e.Value.(*fallbackEntry); now.Sub(fe.used) > f.ttl {
			f.ll.Remove(e)
			delete(f.items, fe.id)
		} else {
			break
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
	for f.ll.Len() > f.max {
		last := f.ll.Back()
		f.ll.Remove(last)
		delete(f.items, last.Value.(*fallbackEntry).id)
	}
	return st
}
