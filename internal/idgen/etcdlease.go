package idgen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Defaults of EtcdConfig.
const (
	DefaultEtcdPrefix = "/blueprint/idgen/"
	DefaultEtcdTTL    = 10 * time.Second
)

// EtcdConfig configures an EtcdLeaser.
type EtcdConfig struct {
	// Client is the etcd client. Required; the caller closes it.
	Client *clientv3.Client
	// Prefix of the keys, default DefaultEtcdPrefix. Worker ID n is the key
	// <Prefix>workers/<n>, attached to an etcd lease; its high-water mark is
	// the key <Prefix>hwm/<n>, which outlives the lease.
	Prefix string
	// TTL of the etcd lease, in whole seconds, at least 2s; default
	// DefaultEtcdTTL. The lease is renewed every TTL/3; a holder that cannot
	// renew it stops issuing IDs TTL/20 before etcd would expire it.
	TTL time.Duration
	// Holder is stored as the value of the worker key, to show who holds
	// it; default "<hostname>:<pid>".
	Holder string
}

// EtcdLeaser is the scale-out lease backend: worker IDs are etcd keys
// created only if absent (a transaction on their create revision) and bound
// to an etcd lease that is kept alive. Every write of a high-water mark is a
// transaction that succeeds only while the writer's worker key exists, so a
// deposed holder can neither extend nor lower the mark of the next one.
type EtcdLeaser struct {
	cfg EtcdConfig
}

// NewEtcdLeaser checks cfg and returns a leaser. It makes no request.
func NewEtcdLeaser(cfg EtcdConfig) (*EtcdLeaser, error) {
	if cfg.Client == nil {
		return nil, errors.New("idgen: etcd config: Client is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultEtcdPrefix
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultEtcdTTL
	}
	if cfg.TTL < 2*time.Second || cfg.TTL%time.Second != 0 {
		return nil, fmt.Errorf("idgen: etcd config: TTL %v must be whole seconds, at least 2s", cfg.TTL)
	}
	if cfg.Holder == "" {
		host, _ := os.Hostname()
		cfg.Holder = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	return &EtcdLeaser{cfg: cfg}, nil
}

// reserveHint makes half the TTL the generator's default Reserve.
func (l *EtcdLeaser) reserveHint() time.Duration { return l.cfg.TTL / 2 }

func (l *EtcdLeaser) workerKey(n int) string { return l.cfg.Prefix + "workers/" + strconv.Itoa(n) }
func (l *EtcdLeaser) markKey(n int) string   { return l.cfg.Prefix + "hwm/" + strconv.Itoa(n) }

// Acquire grants an etcd lease, creates the first free worker key on it,
// reads the worker ID's mark in the same transaction and starts renewing
// the lease.
func (l *EtcdLeaser) Acquire(ctx context.Context) (Lease, error) {
	cli := l.cfg.Client
	t0 := time.Now()
	grant, err := cli.Grant(ctx, int64(l.cfg.TTL/time.Second))
	if err != nil {
		return nil, fmt.Errorf("idgen: etcd grant: %w", err)
	}
	lease, err := l.claim(ctx, grant.ID)
	if err != nil || lease == nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		cli.Revoke(rctx, grant.ID)
		cancel()
		if err == nil {
			err = fmt.Errorf("%w: all %d worker keys under %sworkers/ are held", ErrNoFreeWorker, MaxWorker+1, l.cfg.Prefix)
		}
		return nil, err
	}
	ttl := time.Duration(grant.TTL) * time.Second
	lease.ttl = ttl
	lease.setExpires(t0.Add(ttl - ttl/20))
	go lease.keepalive()
	return lease, nil
}

// claim creates the first free worker key on the etcd lease; nil, nil when
// none is free.
func (l *EtcdLeaser) claim(ctx context.Context, id clientv3.LeaseID) (*etcdLease, error) {
	cli := l.cfg.Client
	held, err := cli.Get(ctx, l.cfg.Prefix+"workers/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("idgen: etcd list workers: %w", err)
	}
	taken := make(map[string]bool, len(held.Kvs))
	for _, kv := range held.Kvs {
		taken[string(kv.Key)] = true
	}
	for n := range MaxWorker + 1 {
		key := l.workerKey(n)
		if taken[key] {
			continue
		}
		resp, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, l.cfg.Holder, clientv3.WithLease(id)), clientv3.OpGet(l.markKey(n))).
			Commit()
		if err != nil {
			return nil, fmt.Errorf("idgen: etcd claim %s: %w", key, err)
		}
		if !resp.Succeeded {
			continue // taken since the listing
		}
		var mark int64
		if kvs := resp.Responses[1].GetResponseRange().GetKvs(); len(kvs) == 1 {
			mark, err = strconv.ParseInt(string(kvs[0].Value), 10, 64)
			if err != nil || mark < 0 {
				cli.Delete(ctx, key)
				return nil, fmt.Errorf("idgen: etcd %s: corrupt high-water mark %q", l.markKey(n), kvs[0].Value)
			}
		}
		return &etcdLease{
			cli: cli, id: id, n: n, key: key, markKey: l.markKey(n), rev: resp.Header.Revision,
			mark: mark, lost: make(chan struct{}), stop: make(chan struct{}), stopped: make(chan struct{}),
		}, nil
	}
	return nil, nil
}

// etcdLease is a held worker key.
type etcdLease struct {
	cli     *clientv3.Client
	id      clientv3.LeaseID
	n       int
	key     string
	markKey string
	rev     int64 // create revision of the worker key
	mark    int64
	ttl     time.Duration
	expires atomic.Pointer[time.Time]

	lost     chan struct{}
	lostOnce sync.Once
	stop     chan struct{}
	stopOnce sync.Once
	stopped  chan struct{}
}

func (l *etcdLease) ID() int               { return l.n }
func (l *etcdLease) HighWater() int64      { return l.mark }
func (l *etcdLease) Lost() <-chan struct{} { return l.lost }
func (l *etcdLease) Expires() time.Time    { return *l.expires.Load() }

func (l *etcdLease) setExpires(t time.Time) { l.expires.Store(&t) }

func (l *etcdLease) lose() { l.lostOnce.Do(func() { close(l.lost) }) }

func (l *etcdLease) isLost() bool {
	select {
	case <-l.lost:
		return true
	default:
		return false
	}
}

// keepalive renews the etcd lease every TTL/3. A renewal sent at t0 keeps
// the lease on the server until at least t0+TTL, so Expires, t0+TTL-TTL/20,
// is always before the server can expire it. The lease is lost when etcd
// no longer knows it or when Expires passes without a renewal.
func (l *etcdLease) keepalive() {
	defer close(l.stopped)
	interval := l.ttl / 3
	next := time.NewTimer(interval)
	defer next.Stop()
	for {
		deadline := l.Expires()
		expire := time.NewTimer(time.Until(deadline))
		select {
		case <-l.stop:
			expire.Stop()
			return
		case <-expire.C:
			l.lose()
			return
		case <-next.C:
		}
		expire.Stop()
		t0 := time.Now()
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		go func() { // a Release must not wait for a renewal to time out
			select {
			case <-l.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		resp, err := l.cli.KeepAliveOnce(ctx, l.id)
		cancel()
		switch {
		case err == nil:
			ttl := time.Duration(resp.TTL) * time.Second
			l.setExpires(t0.Add(ttl - ttl/20))
			next.Reset(interval)
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			l.lose()
			return
		default:
			next.Reset(min(interval, 250*time.Millisecond)) // retry soon, until the deadline
		}
	}
}

// SetHighWater stores ms if the worker key is still this lease's.
func (l *etcdLease) SetHighWater(ctx context.Context, ms int64) error {
	if l.isLost() {
		return ErrLeaseLost
	}
	resp, err := l.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev)).
		Then(clientv3.OpPut(l.markKey, strconv.FormatInt(ms, 10))).
		Commit()
	if err != nil {
		return fmt.Errorf("idgen: etcd store %s: %w", l.markKey, err)
	}
	if !resp.Succeeded {
		l.lose()
		return fmt.Errorf("%w: %s is no longer ours", ErrLeaseLost, l.key)
	}
	return nil
}

// Release stops the renewals, stores the final mark and deletes the worker
// key in one transaction (if the key is still ours), then revokes the etcd
// lease.
func (l *etcdLease) Release(ctx context.Context, ms int64) error {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.stopped
	defer l.lose()
	var err error
	if !l.isLost() {
		var resp *clientv3.TxnResponse
		resp, err = l.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev)).
			Then(clientv3.OpPut(l.markKey, strconv.FormatInt(ms, 10)), clientv3.OpDelete(l.key)).
			Commit()
		if err != nil {
			err = fmt.Errorf("idgen: etcd release %s: %w", l.key, err)
		} else if !resp.Succeeded {
			err = fmt.Errorf("%w: %s is no longer ours", ErrLeaseLost, l.key)
		}
	}
	if _, rerr := l.cli.Revoke(ctx, l.id); rerr != nil && !errors.Is(rerr, rpctypes.ErrLeaseNotFound) && err == nil {
		err = fmt.Errorf("idgen: etcd revoke: %w", rerr)
	}
	return err
}
