package covplot

import (
	"image/color"
	"math"
)

// A stop is a colour of the diverging map at position t in [-1, 1].
type stop struct {
	t       float64
	r, g, b float64
}

// diverging runs from a deep blue through white to a deep red. The steps are made so that
// lightness changes about evenly on both sides and the two ends look equally strong.
var diverging = []stop{
	{-1.00, 28, 60, 140},
	{-0.70, 56, 110, 190},
	{-0.40, 135, 175, 222},
	{-0.15, 210, 226, 243},
	{0.00, 255, 255, 255},
	{0.15, 246, 216, 200},
	{0.40, 232, 150, 118},
	{0.70, 200, 72, 56},
	{1.00, 135, 20, 32},
}

// Colours of what is not a value.
var (
	// EmptyColour fills cells whose value is NaN and the lines between blocks.
	EmptyColour = color.RGBA{205, 205, 205, 255}
	background  = color.RGBA{255, 255, 255, 255}
	ink         = color.RGBA{30, 30, 30, 255}
	frameColour = color.RGBA{110, 110, 110, 255}
)

// Colour returns the colour of v on the diverging map with limits ±limit: white at 0, blue
// below, red above, the deepest at ±limit and beyond. NaN gives EmptyColour. A limit that
// is not positive and finite is taken as 1.
func Colour(v, limit float64) color.RGBA {
	if math.IsNaN(v) {
		return EmptyColour
	}
	if !(limit > 0) || math.IsInf(limit, 0) {
		limit = 1
	}
	t := max(-1, min(1, v/limit))
	k := 1
	for k < len(diverging)-1 && diverging[k].t < t {
		k++
	}
	a, b := diverging[k-1], diverging[k]
	w := (t - a.t) / (b.t - a.t)
	mix := func(x, y float64) uint8 { return uint8(math.Round(x + w*(y-x))) }
	return color.RGBA{mix(a.r, b.r), mix(a.g, b.g), mix(a.b, b.b), 255}
}
