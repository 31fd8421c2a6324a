package blob_test

import (
	"testing"

	"github.com/blueprint-media/blueprint/internal/blob"
	"github.com/blueprint-media/blueprint/internal/blob/blobtest"
)

func TestDisk(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Store {
		s, err := blob.NewDisk(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func FuzzCheckKey(f *testing.F) {
	for _, k := range []string{"videos/1/hls/master.m3u8", "../x", "a//b", "", "é"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, k string) {
		if blob.CheckKey(k) != nil {
			return
		}
		for _, bad := range []string{"..", "//"} {
			if k == bad || len(k) > 512 || k[0] == '/' {
				t.Fatalf("accepted %q", k)
			}
		}
	})
}
