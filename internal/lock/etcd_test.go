package lock_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/blueprint-media/blueprint/internal/testenv"
	"sync"
	"testing"
	"time"

	"github.com/blueprint-media/blueprint/internal/lock"
	"github.com/blueprint-media/blueprint/internal/lock/locktest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// startEtcd starts a throwaway etcd (internal/testenv) and returns a
// client; both are stopped when the test ends.
func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	return testenv.EtcdClient(t, testenv.StartEtcd(t))
}

func TestEtcd(t *testing.T) {
	cli := startEtcd(t)
	ctx := context.Background()
	t.Run("Conformance", func(t *testing.T) {
		locktest.Run(t, func(t *testing.T) lock.Locker {
			return lock.NewEtcd(cli, "", lock.Options{TTL: 2 * time.Second})
		})
	})
	t.Run("FIFOAcrossLockers", func(t *testing.T) {
		ls := make([]lock.Locker, 5)
		for i := range ls {
			ls[i] = lock.NewEtcd(cli, "", lock.Options{TTL: 5 * time.Second})
			defer ls[i].Close()
		}
		first, err := ls[0].Lock(ctx, "fifo")
		if err != nil {
			t.Fatal(err)
		}
		var (
			mu    sync.Mutex
			order []int
			wg    sync.WaitGroup
		)
		for i := 1; i < len(ls); i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lease, err := ls[i].Lock(ctx, "fifo")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				order = append(order, i)
				mu.Unlock()
				if err := lease.Unlock(ctx); err != nil {
					t.Error(err)
				}
			}()
			time.Sleep(100 * time.Millisecond)
		}
		if err := first.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if fmt.Sprint(order) != "[1 2 3 4]" {
			t.Fatalf("grant order %v, want arrival order [1 2 3 4]", order)
		}
	})
	t.Run("SessionLossIsReported", func(t *testing.T) {
		a := lock.NewEtcd(cli, "", lock.Options{TTL: time.Second})
		defer a.Close()
		b := lock.NewEtcd(cli, "", lock.Options{TTL: time.Second})
		defer b.Close()
		la, err := a.Lock(ctx, "lost")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2500 * time.Millisecond) // the keepalive holds it past the TTL
		if err := la.Err(); err != nil {
			t.Fatalf("lease lost while keepalive runs: %v", err)
		}
		resp, err := cli.Get(ctx, lock.DefaultEtcdPrefix+"lost/", clientv3.WithPrefix())
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("lock key: %v, %d keys", err, len(resp.Kvs))
		}
		if uint64(resp.Kvs[0].CreateRevision) != la.Token {
			t.Fatalf("token %d, key CreateRevision %d", la.Token, resp.Kvs[0].CreateRevision)
		}
		// Revoke the session lease, as etcd does when keepalives stop.
		if _, err := cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-la.Lost():
		case <-time.After(3 * time.Second):
			t.Fatal("holder not told about the session loss")
		}
		lb, err := b.TryLock(ctx, "lost")
		if err != nil {
			t.Fatalf("TryLock after the holder's session expired: %v", err)
		}
		if err := la.Unlock(ctx); !errors.Is(err, lock.ErrNotHeld) {
			t.Fatalf("Unlock of a lost lease = %v, want ErrNotHeld", err)
		}
		// The stale Unlock must not have released b's key.
		if _, err := a.TryLock(ctx, "lost"); !errors.Is(err, lock.ErrLocked) {
			t.Fatalf("TryLock while b holds = %v, want ErrLocked", err)
		}
		if lb.Token <= la.Token {
			t.Fatalf("token %d after %d", lb.Token, la.Token)
		}
		if err := lb.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("WaiterRequeuesAfterSessionLoss", func(t *testing.T) {
		a := lock.NewEtcd(cli, "", lock.Options{TTL: 5 * time.Second})
		defer a.Close()
		b := lock.NewEtcd(cli, "", lock.Options{TTL: 5 * time.Second})
		defer b.Close()
		la, err := a.Lock(ctx, "requeue")
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan *lock.Lease, 1)
		errc := make(chan error, 1)
		go func() {
			lb, err := b.Lock(ctx, "requeue")
			if err != nil {
				errc <- err
				return
			}
			got <- lb
		}()
		// Wait for b's waiter key, then revoke b's session under it.
		var waiter clientv3.LeaseID
		for deadline := time.Now().Add(5 * time.Second); waiter == 0; {
			resp, err := cli.Get(ctx, lock.DefaultEtcdPrefix+"requeue/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Kvs) == 2 {
				waiter = clientv3.LeaseID(resp.Kvs[1].Lease)
			} else if time.Now().After(deadline) {
				t.Fatalf("%d keys under the lock, want holder and waiter", len(resp.Kvs))
			} else {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if _, err := cli.Revoke(ctx, waiter); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if err := la.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case lb := <-got:
			if lb.Token <= la.Token {
				t.Fatalf("token %d after %d", lb.Token, la.Token)
			}
			if err := lb.Err(); err != nil {
				t.Fatalf("new lease already lost: %v", err)
			}
			if err := lb.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		case err := <-errc:
			t.Fatalf("waiter whose session expired failed instead of queueing again: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("waiter not granted the lock 10s after Unlock")
		}
	})
}
