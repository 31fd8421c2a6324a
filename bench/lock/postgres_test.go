package lockbench

import (
	"testing"

	"github.com/blueprint-media/blueprint/internal/testenv"
)

// startPostgres starts a throwaway PostgreSQL (internal/testenv) with
// fsync on, like production, and returns its DSN.
func startPostgres(b *testing.B) string {
	b.Helper()
	return testenv.StartPostgres(b, true)
}
