// Package lb is the load balancer between the API gateway and the frontend
// servers.
//
// A Balancer holds a fixed list of backends (base URLs of frontend servers),
// checks their health, and picks one for each request with one of three
// strategies:
//
//   - RoundRobin takes the healthy backends in turn, using one atomic counter.
//   - LeastConn takes the healthy backend with the fewest requests in flight;
//     ties are broken in round-robin order so that idle backends share load.
//   - ConsistentHash places VirtualNodes points per backend on a hash ring
//     (xxhash) and sends a key to the first healthy backend clockwise from the
//     key's hash. When a backend goes down only the keys it owned move, and
//     each moves to the next backend on the ring.
//
// Health is checked actively: every HealthInterval each backend gets a GET on
// HealthPath, and a 2xx answer within HealthTimeout counts as good. A backend
// is marked down after UnhealthyAfter consecutive bad checks and back up after
// HealthyAfter consecutive good ones; the first check after Start decides the
// initial state directly. The proxy also marks a backend down passively when
// a connection to it cannot be made.
//
// Proxy wraps the Balancer in an http.Handler built on
// httputil.ReverseProxy. It streams bodies both ways, flushes every write (so
// server-sent events pass through), retries requests without a body once on
// another backend when the first one cannot be reached, and answers 502 or
// 503 with a short plain-text reason otherwise.
//
// The lifecycle is New, Start, Stop. New only validates and allocates; Start
// runs the first round of health checks and starts the periodic checker.
package lb
