package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Chart layout, in pixels.
const (
	chartWidth  = 1100
	labelWidth  = 460
	rowHeight   = 18
	chartMargin = 12
)

var (
	colBackground = color.RGBA{255, 255, 255, 255}
	colText       = color.RGBA{20, 20, 20, 255}
	colGrid       = color.RGBA{215, 215, 215, 255}
	colAxis       = color.RGBA{90, 90, 90, 255}
	colSignet     = color.RGBA{46, 110, 183, 255}
	colSPIRE      = color.RGBA{221, 132, 43, 255}
	colHeading    = color.RGBA{240, 240, 240, 255}
)

// writeChart draws one horizontal bar per metric: how many times better
// Signet is than SPIRE, on a log scale centred on 1×.
func writeChart(path string, r *report) error {
	type line struct {
		heading string
		label   string
		adv     float64
		ok      bool
		why     string
	}
	var lines []line
	maxLog := 1.0 // at least 10× either side
	for _, s := range r.Scenarios {
		lines = append(lines, line{heading: fmt.Sprintf("%d. %s", s.N, s.Title)})
		for _, row := range r.Rows {
			if row.Scenario != s.N {
				continue
			}
			l := line{label: row.Metric}
			l.adv, l.ok = row.advantage()
			if !l.ok {
				l.why = "no ratio"
				for _, v := range []value{row.Signet, row.SPIRE} {
					if !v.OK {
						l.why = v.Note
						break
					}
				}
			} else {
				maxLog = max(maxLog, math.Abs(math.Log10(l.adv)))
			}
			lines = append(lines, l)
		}
	}
	maxLog = math.Ceil(maxLog)
	top := chartMargin + 3*rowHeight
	height := top + (len(lines)+2)*rowHeight + chartMargin
	img := image.NewRGBA(image.Rect(0, 0, chartWidth, height))
	draw.Draw(img, img.Bounds(), &image.Uniform{colBackground}, image.Point{}, draw.Src)

	plotL, plotR := labelWidth, chartWidth-chartMargin-110
	centre := (plotL + plotR) / 2
	half := float64(plotR-plotL) / 2
	x := func(adv float64) int {
		v := math.Log10(adv) / maxLog
		v = math.Max(-1, math.Min(1, v))
		return centre + int(math.Round(v*half))
	}
	text(img, chartMargin, chartMargin+11, colText, ascii("Signet vs SPIRE v1.13.3: how many times better Signet is, per metric (log scale)"))
	text(img, chartMargin, chartMargin+11+rowHeight, colSPIRE, "<- SPIRE better")
	text(img, chartMargin+130, chartMargin+11+rowHeight, colSignet, "Signet better ->")
	text(img, chartMargin+270, chartMargin+11+rowHeight, colAxis, ascii("("+r.Date+", "+strings.Fields(r.Mode)[0]+" mode)"))

	// Grid at each power of ten.
	bottom := top + len(lines)*rowHeight
	for e := -maxLog; e <= maxLog; e++ {
		gx := x(math.Pow(10, e))
		c := colGrid
		if e == 0 {
			c = colAxis
		}
		vline(img, gx, top-4, bottom, c)
		lbl := fmt.Sprintf("%gx", math.Pow(10, math.Abs(e)))
		text(img, gx-len(lbl)*7/2, bottom+14, colAxis, lbl)
	}
	for i, l := range lines {
		y := top + i*rowHeight
		if l.heading != "" {
			fill(img, image.Rect(chartMargin, y+1, chartWidth-chartMargin, y+rowHeight-1), colHeading)
			text(img, chartMargin+4, y+13, colText, ascii(l.heading))
			text(img, chartMargin+5, y+13, colText, ascii(l.heading)) // bold
			continue
		}
		text(img, chartMargin+12, y+13, colText, clip(ascii(l.label), (labelWidth-chartMargin-20)/7))
		if !l.ok {
			text(img, centre+6, y+13, colAxis, clip(ascii(l.why), (chartWidth-centre-20)/7))
			continue
		}
		bx := x(l.adv)
		c, who, factor := colSignet, "Signet", l.adv
		if l.adv < 1 {
			c, who, factor = colSPIRE, "SPIRE", 1/l.adv
		}
		lo, hi := min(bx, centre), max(bx, centre)
		if hi-lo < 2 {
			hi = lo + 2
		}
		fill(img, image.Rect(lo, y+3, hi, y+rowHeight-3), c)
		lbl := fmt.Sprintf("%s %sx", who, fmtNum(factor))
		if l.adv >= 1 {
			text(img, hi+4, y+13, colText, lbl)
		} else {
			text(img, lo-4-len(lbl)*7, y+13, colText, lbl)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("bench: encode chart: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

func text(img draw.Image, x, y int, c color.Color, s string) {
	d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func fill(img draw.Image, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, &image.Uniform{c}, image.Point{}, draw.Src)
}

func vline(img *image.RGBA, x, y0, y1 int, c color.Color) {
	for y := y0; y < y1; y++ {
		img.Set(x, y, c)
	}
}

// ascii replaces the few non-ASCII characters the report uses; the bitmap
// font has ASCII only.
func ascii(s string) string {
	return strings.NewReplacer("→", "->", "×", "x", "µ", "u", "…", "...").Replace(s)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:max(n-3, 0)] + "..."
}
