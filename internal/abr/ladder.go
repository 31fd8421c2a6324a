package abr

import "fmt"

// Rung is one rendition of the ABR ladder.
type Rung struct {
	Name          string // "720p": lines on the short side of the picture
	Width, Height int    // output size, both even
	VideoKbps     int    // x264 target (-b:v)
	MaxKbps       int    // VBV peak (-maxrate), 1.1 x VideoKbps
	BufKbps       int    // VBV buffer (-bufsize), 2 x VideoKbps
	AudioKbps     int    // AAC bitrate when the source has audio
}

// ladderStep is one row of the fixed table: a 16:9 bounding box and
// bitrates. Bitrates follow Apple's HLS Authoring Specification ladder,
// rounded (Apple: 145 kb/s at 416x234, 365 at 640x360, 730 and 1100 at
// 768x432, 3000 and 4500 at 720p, 6000 and 7800 at 1080p); where Apple has
// two tiers for a size we take the lower one.
type ladderStep struct {
	name       string
	boxW, boxH int
	video      int
	audio      int
}

func ladderTable() []ladderStep {
	return []ladderStep{
		{"240p", 426, 240, 150, 64},
		{"360p", 640, 360, 400, 96},
		{"480p", 854, 480, 1100, 128},
		{"720p", 1280, 720, 3000, 128},
		{"1080p", 1920, 1080, 6000, 128},
	}
}

// Ladder picks the rungs for a source, lowest first (the order of the
// master playlist).
//
// Each table rung is a 16:9 box (426x240 ... 1920x1080, turned for portrait
// sources); the source is scaled to fit the box, keeping its aspect ratio,
// sizes rounded to even. A rung is usable only if that needs no upscaling.
// With three or more usable rungs the ladder is the two highest plus 360p
// (the mobile floor), or the three highest when 360p is already among the
// two: 1080p -> 360p/720p/1080p, 720p -> 360p/480p/720p, 480p ->
// 240p/360p/480p. With fewer, all usable rungs are kept and, when the
// source is at least 1.25 times the highest of them (or none fits), a rung
// at source size is added: 534x300 -> 240p + 300p, 320x180 -> 180p.
// Ladder returns nil for a source smaller than 2x2.
func Ladder(info Info) []Rung {
	w, h := info.Width, info.Height
	if w < 2 || h < 2 {
		return nil
	}
	type fitted struct {
		rung Rung
		// roomy: the source is at least 1.25x this rung.
		roomy bool
	}
	var fit []fitted
	for _, s := range ladderTable() {
		rw, rh, ok, roomy := fitBox(w, h, s.boxW, s.boxH)
		if !ok {
			continue
		}
		fit = append(fit, fitted{rung: s.rung(rw, rh), roomy: roomy})
	}
	n := len(fit)
	if n >= 3 {
		low := fit[n-3]
		for _, f := range fit[:n-2] {
			if f.rung.Name == "360p" {
				low = f
			}
		}
		return []Rung{low.rung, fit[n-2].rung, fit[n-1].rung}
	}
	out := make([]Rung, 0, n+1)
	for _, f := range fit {
		out = append(out, f.rung)
	}
	if n == 0 || fit[n-1].roomy {
		src := sourceRung(w, h)
		if n > 0 && src.VideoKbps < fit[n-1].rung.VideoKbps {
			// Extreme aspect ratios: the table rung below holds fewer
			// pixels than its box; never give the bigger rung less.
			top := fit[n-1].rung
			src = makeRung(src.Name, src.Width, src.Height, top.VideoKbps, top.AudioKbps)
		}
		out = append(out, src)
	}
	return out
}

func (s ladderStep) rung(w, h int) Rung {
	return makeRung(s.name, w, h, s.video, s.audio)
}

func makeRung(name string, w, h, video, audio int) Rung {
	return Rung{
		Name:      name,
		Width:     w,
		Height:    h,
		VideoKbps: video,
		MaxKbps:   roundTo10(video * 11 / 10),
		BufKbps:   2 * video,
		AudioKbps: audio,
	}
}

// fitBox scales a w x h source to fit a boxW x boxH box (turned to portrait
// for a portrait source), keeping the aspect ratio, both sides rounded to
// even. ok is false when that would upscale; roomy reports whether the
// source is at least 1.25 times the result. Integer arithmetic only, so the
// result is the same on every platform.
func fitBox(w, h, boxW, boxH int) (rw, rh int, ok, roomy bool) {
	if h > w {
		boxW, boxH = boxH, boxW
	}
	W, H, bW, bH := int64(w), int64(h), int64(boxW), int64(boxH)
	if W*bH <= H*bW { // source as narrow as the box or narrower: height-limited
		if bH > H {
			return 0, 0, false, false
		}
		rw, rh = roundEven(W*bH, H), boxH
		roomy = 4*H >= 5*bH
	} else { // wider: width-limited
		if bW > W {
			return 0, 0, false, false
		}
		rw, rh = boxW, roundEven(H*bW, W)
		roomy = 4*W >= 5*bW
	}
	rw = max(2, min(rw, w&^1))
	rh = max(2, min(rh, h&^1))
	return rw, rh, true, roomy
}

// roundEven returns n/d rounded to the nearest even integer (n, d > 0).
func roundEven(n, d int64) int {
	return int(2 * ((n + d) / (2 * d)))
}

func roundTo10(k int) int { return (k + 5) / 10 * 10 }

// sourceRung is a rung at the source size (rounded down to even), with a
// bitrate interpolated by pixel count between the table rows (and
// proportional to the lowest row below it, at least 50 kb/s).
func sourceRung(w, h int) Rung {
	w, h = max(2, w&^1), max(2, h&^1)
	px := int64(w) * int64(h)
	steps := ladderTable()
	pixels := func(s ladderStep) int64 { return int64(s.boxW) * int64(s.boxH) }
	video, audio := 0, steps[0].audio
	switch last := steps[len(steps)-1]; {
	case px <= pixels(steps[0]):
		video = max(50, int(int64(steps[0].video)*px/pixels(steps[0])))
	case px >= pixels(last):
		video, audio = last.video, last.audio
	default:
		for i := 0; i+1 < len(steps); i++ {
			lo, hi := steps[i], steps[i+1]
			if px > pixels(hi) {
				continue
			}
			video = lo.video + int(int64(hi.video-lo.video)*(px-pixels(lo))/(pixels(hi)-pixels(lo)))
			audio = lo.audio
			break
		}
	}
	return makeRung(fmt.Sprintf("%dp", min(w, h)), w, h, roundTo10(video), audio)
}
