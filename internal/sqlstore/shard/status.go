package shard

import (
	"context"
	"fmt"
	"strings"

	"github.com/blueprint-media/blueprint/internal/sqlstore"
)

// ClusterStatus is one cluster as an operator sees it.
type ClusterStatus struct {
	Name     string `json:"name"`
	Primary  string `json:"primary"` // password redacted
	Replicas int    `json:"replicas"`
	Shards   int    `json:"shards"`
	Ranges   string `json:"ranges"` // "0-2047,3000"
}

// Status is the map in use and the recent moves.
type Status struct {
	Version  int64           `json:"version"`
	Clusters []ClusterStatus `json:"clusters"`
	Paused   []int           `json:"paused,omitempty"`
	Moves    []MoveRecord    `json:"moves,omitempty"`
}

// Status reports the router's map (version, clusters and the shards each
// owns, shards paused by a move) and the last moves from the catalog.
func (r *Router) Status(ctx context.Context) (Status, error) {
	m := r.Map()
	st := Status{Version: m.Version}
	for _, name := range m.ClusterNames() {
		cc := m.Clusters[name]
		owned := m.ShardsOf(name)
		st.Clusters = append(st.Clusters, ClusterStatus{Name: name, Primary: sqlstore.Redact(cc.Primary), Replicas: len(cc.Replicas), Shards: len(owned), Ranges: Ranges(owned)})
	}
	for s, state := range m.State {
		if state == StatePaused {
			st.Paused = append(st.Paused, s)
		}
	}
	moves, err := r.catalog.Moves(ctx, 10)
	if err != nil {
		return st, err
	}
	st.Moves = moves
	return st, nil
}

// Ranges prints sorted shard numbers as "0-2047,3000" ("none" for none).
func Ranges(s []int32) string {
	if len(s) == 0 {
		return "none"
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if i == j {
			fmt.Fprint(&b, s[i])
		} else {
			fmt.Fprintf(&b, "%d-%d", s[i], s[j])
		}
		i = j + 1
	}
	return b.String()
}
