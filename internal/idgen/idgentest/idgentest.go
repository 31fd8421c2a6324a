// Package idgentest gives tests of other packages a started ID generator
// with a file lease in the test's temporary directory.
package idgentest

import (
	"context"
	"testing"

	"github.com/blueprint-media/blueprint/internal/idgen"
)

// New returns a started Generator that is stopped when the test ends.
func New(t testing.TB) *idgen.Generator {
	t.Helper()
	g, err := idgen.New(idgen.Config{Leaser: idgen.NewFileLeaser(t.TempDir())})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Stop(context.Background()) })
	return g
}
