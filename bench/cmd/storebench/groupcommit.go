package main

// batcher is an application group commit: concurrent writers hand their
// change to one flusher, which takes every change waiting, makes them
// durable together with flush, and answers each writer after that. A lone
// writer waits for no one.
type batcher[T any] struct {
	reqs  chan batchReq[T]
	flush func([]T) error
	done  chan struct{}
}

type batchReq[T any] struct {
	item T
	err  chan error
}

func newBatcher[T any](flush func([]T) error) *batcher[T] {
	b := &batcher[T]{reqs: make(chan batchReq[T], 1024), flush: flush, done: make(chan struct{})}
	go b.loop()
	return b
}

// do makes item durable with whatever else is waiting and returns the
// flush's error.
func (b *batcher[T]) do(item T) error {
	r := batchReq[T]{item: item, err: make(chan error, 1)}
	b.reqs <- r
	return <-r.err
}

func (b *batcher[T]) loop() {
	defer close(b.done)
	var reqs []batchReq[T]
	var items []T
	for r := range b.reqs {
		reqs = append(reqs[:0], r)
	more:
		for {
			select {
			case r, ok := <-b.reqs:
				if !ok {
					break more
				}
				reqs = append(reqs, r)
			default:
				break more
			}
		}
		items = items[:0]
		for _, r := range reqs {
			items = append(items, r.item)
		}
		err := b.flush(items)
		for _, r := range reqs {
			r.err <- err
		}
	}
}

// close stops the flusher once no writer uses the batcher any more.
func (b *batcher[T]) close() {
	close(b.reqs)
	<-b.done
}
