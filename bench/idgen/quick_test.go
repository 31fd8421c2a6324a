package idgen_test
import ("testing";"time";"github.com/bwmarrin/snowflake")
func BenchmarkQBw(b *testing.B){ n,_:=snowflake.NewNode(1); for b.Loop(){ n.Generate() } }
var sink int64
func BenchmarkQSince(b *testing.B){ e:=time.Now(); for b.Loop(){ sink += time.Since(e).Nanoseconds()/1e6 } }
