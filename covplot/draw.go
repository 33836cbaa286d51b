package covplot

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// Draw draws the figure.
func (f *Figure) Draw() (*image.RGBA, error) {
	lay, err := f.Layout()
	if err != nil {
		return nil, err
	}
	img := image.NewRGBA(image.Rectangle{Max: lay.Size})
	draw.Draw(img, img.Bounds(), image.NewUniform(background), image.Point{}, draw.Src)

	for k, pl := range lay.Panels {
		frame(img, pl.Heatmap)
		draw.Draw(img, pl.Heatmap, image.NewUniform(EmptyColour), image.Point{}, draw.Src)
		data := f.Panels[k].Data
		for i := range pl.Rows {
			for j := range pl.Cols {
				fill(img, pl.Cell(i, j), Colour(data.At(i, j), pl.Limit))
			}
		}
	}
	for _, b := range lay.Bars {
		frame(img, b.Rect)
		for y := b.Rect.Min.Y; y < b.Rect.Max.Y; y++ {
			// Row y shows the value at its centre, +limit at the top row.
			frac := 1 - (float64(y-b.Rect.Min.Y)+0.5)/float64(b.Rect.Dy())
			c := Colour((2*frac-1)*b.Limit, b.Limit)
			fill(img, image.Rect(b.Rect.Min.X, y, b.Rect.Max.X, y+1), c)
		}
		for _, t := range ticks(b.Limit) {
			y := barY(b.Rect, t.frac)
			fill(img, image.Rect(b.Rect.Max.X, y, b.Rect.Max.X+tickLength, y+1), ink)
		}
	}
	for _, t := range lay.texts {
		d := font.Drawer{Dst: img, Src: image.NewUniform(ink), Face: t.face.Face}
		d.Dot = fixed.P(t.at.X, t.at.Y)
		d.DrawString(t.text)
	}
	return img, nil
}

// Encode draws the figure and writes it to w as PNG.
func (f *Figure) Encode(w io.Writer) error {
	img, err := f.Draw()
	if err != nil {
		return err
	}
	enc := png.Encoder{CompressionLevel: png.DefaultCompression}
	if err := enc.Encode(w, img); err != nil {
		return fmt.Errorf("covplot: writing PNG: %w", err)
	}
	return nil
}

// fill paints r in c. It writes the pixels directly: a figure has up to millions of cells.
func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Rect)
	if r.Empty() {
		return
	}
	row := img.Pix[img.PixOffset(r.Min.X, r.Min.Y) : img.PixOffset(r.Max.X-1, r.Min.Y)+4]
	for x := 0; x < len(row); x += 4 {
		row[x], row[x+1], row[x+2], row[x+3] = c.R, c.G, c.B, c.A
	}
	for y := r.Min.Y + 1; y < r.Max.Y; y++ {
		copy(img.Pix[img.PixOffset(r.Min.X, y):], row)
	}
}

// frame draws a one-pixel line around r, outside it.
func frame(img *image.RGBA, r image.Rectangle) {
	o := r.Inset(-1)
	u := image.NewUniform(frameColour)
	for _, side := range []image.Rectangle{
		image.Rect(o.Min.X, o.Min.Y, o.Max.X, o.Min.Y+1), image.Rect(o.Min.X, o.Max.Y-1, o.Max.X, o.Max.Y),
		image.Rect(o.Min.X, o.Min.Y, o.Min.X+1, o.Max.Y), image.Rect(o.Max.X-1, o.Min.Y, o.Max.X, o.Max.Y),
	} {
		draw.Draw(img, side, u, image.Point{}, draw.Src)
	}
}

// formatTick writes a colour bar value, with a true minus sign.
func formatTick(v float64) string {
	if math.Abs(v) < 1e-300 {
		return "0"
	}
	return strings.Replace(strconv.FormatFloat(v, 'g', 4, 64), "-", "−", 1)
}

// placedText is a line of text and where its baseline starts.
type placedText struct {
	text string
	face *face
	at   image.Point
}

// The Go fonts, parsed once; faces are made per figure since they are not safe for
// concurrent use.
var fonts = sync.OnceValues(func() ([2]*opentype.Font, error) {
	var fs [2]*opentype.Font
	for k, ttf := range [][]byte{goregular.TTF, gobold.TTF} {
		f, err := opentype.Parse(ttf)
		if err != nil {
			return fs, err
		}
		fs[k] = f
	}
	return fs, nil
})

type face struct{ font.Face }

type faces struct {
	title, note, panel, tick *face
}

func newFaces() *faces {
	fs, err := fonts()
	if err != nil {
		panic(fmt.Sprintf("covplot: the embedded Go fonts do not parse: %v", err)) // cannot happen
	}
	mk := func(f *opentype.Font, size float64) *face {
		ff, err := opentype.NewFace(f, &opentype.FaceOptions{Size: size, DPI: 72, Hinting: font.HintingFull})
		if err != nil {
			panic(fmt.Sprintf("covplot: font face: %v", err)) // cannot happen with these sizes
		}
		return &face{ff}
	}
	return &faces{title: mk(fs[1], 17), note: mk(fs[0], 13), panel: mk(fs[0], 13), tick: mk(fs[0], 11)}
}

func (f *face) width(s string) int        { return font.MeasureString(f.Face, s).Ceil() }
func (f *face) ascent() int               { return f.Metrics().Ascent.Ceil() }
func (f *face) lineHeight() int           { return f.Metrics().Height.Ceil() + 2 }
func (f *face) fits(s string, w int) bool { return f.width(s) <= w }

// wrap breaks text into lines no wider than w: at each "\n", then at spaces. A word too
// long for a line is shortened in the middle. With maxLines > 0 and too many lines, each
// "\n"-separated line is kept whole and shortened when they are few enough; otherwise the
// lines past the last allowed one are joined to it and the result is shortened.
func (f *face) wrap(text string, w, maxLines int) []string {
	if text == "" {
		return nil
	}
	paras := strings.Split(text, "\n")
	var lines []string
	for _, para := range paras {
		line := ""
		for _, word := range strings.Fields(para) {
			switch {
			case line == "":
				line = word
			case f.fits(line+" "+word, w):
				line += " " + word
			default:
				lines = append(lines, line)
				line = word
			}
		}
		lines = append(lines, line)
	}
	switch {
	case maxLines <= 0 || len(lines) <= maxLines:
	case len(paras) <= maxLines:
		lines = paras
	default:
		lines = append(lines[:maxLines-1], strings.Join(lines[maxLines-1:], " "))
	}
	for i, l := range lines {
		lines[i] = f.shorten(l, w)
	}
	return lines
}

// shorten cuts runes from the middle of s, putting "…" in their place, until it is no wider
// than w.
func (f *face) shorten(s string, w int) string {
	if f.fits(s, w) {
		return s
	}
	r := []rune(s)
	for keep := len(r) - 1; keep > 0; keep-- {
		head := (keep + 1) / 2
		t := string(r[:head]) + "…" + string(r[len(r)-(keep-head):])
		if f.fits(t, w) {
			return t
		}
	}
	if utf8.RuneCountInString(s) > 0 {
		return "…"
	}
	return s
}
