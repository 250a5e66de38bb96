package store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/store"
)

// TestReadsRedisKilled sends pipelined batches of reads of 2,000 products
// (ReadArms from six goroutines, as a trainer's flush does, and ReadParams
// from two) while Redis is SIGKILLed and restarted 60
// times; every read that succeeds must answer the empty model. Under -race
// it catches rueidis recycling a retried batch's commands while the dead
// connection's writer still reads them (doReads pins them): without the
// pins it reported that race in most runs. The server keeps nothing, so
// that it is back at once: one loading an AOF answers the retried batch
// with LOADING errors, which do not recycle the commands.
func TestReadsRedisKilled(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	const d = 4
	ids := make([]string, 2000)
	for i := range ids {
		ids[i] = fmt.Sprintf("p%d", i)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var good atomic.Int64
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if g%4 != 3 {
					arms, err := store.ReadArms(ctx, c, "m", d, 1, ids)
					if err != nil {
						continue
					}
					for i, a := range arms {
						if a.Version != 0 || a.Arm.N() != 0 || a.Arm.A()[0] != 1 {
							t.Errorf("ReadArms: %s is %+v, want a prior arm", ids[i], a)
							return
						}
					}
				} else {
					params, err := store.ReadParams(ctx, c, "m", d, ids)
					if err != nil {
						continue
					}
					for i, p := range params {
						if p.Stored || p.Events != 0 {
							t.Errorf("ReadParams: %s is %+v, want not stored", ids[i], p)
							return
						}
					}
				}
				good.Add(1)
			}
		}()
	}
	for i := range 60 {
		time.Sleep(time.Duration(60+i%7*30) * time.Millisecond)
		srv.Kill()
		srv.Restart()
	}
	cancel()
	wg.Wait()
	if good.Load() == 0 {
		t.Fatal("no read succeeded")
	}
}
