package config

import (
	"bytes"
	"fmt"
)

// MaxNesting bounds how deeply brackets, braces, parentheses, quoted
// strings, heredocs and template interpolations may nest in a
// configuration file, and how many unary operators (`!`, `-`) may follow
// one another. hclsyntax parses these recursively: without the bound a
// file under MaxFileSize overflows the goroutine stack and kills the
// process (review finding 15).
const MaxNesting = 64

// checkNesting scans src once, before hclsyntax sees it, and refuses
// nesting deeper than MaxNesting, naming the limit and the line. It tracks
// strings, heredocs and comments so that brackets inside them neither hide
// nor fake real nesting; it does not validate syntax (hclsyntax does).
func checkNesting(filename string, src []byte) error {
	var (
		stack   []byte   // '(' '[' '{' brackets, '$' interpolation, '"' string, 'H' heredoc
		markers [][]byte // heredoc end markers, one per 'H' on stack
		line    = 1
		unary   = 0 // consecutive unary operators
	)
	tooDeep := func(what string) error {
		return fmt.Errorf("config: %s:%d: %s nest deeper than %d levels (config.MaxNesting); flatten the file", filename, line, what, MaxNesting)
	}
	push := func(k byte) error {
		stack = append(stack, k)
		if len(stack) > MaxNesting {
			return tooDeep("brackets, braces, parentheses, strings or templates")
		}
		return nil
	}
	top := func() byte {
		if len(stack) == 0 {
			return 0
		}
		return stack[len(stack)-1]
	}
	atLineStart := true
	for i := 0; i < len(src); i++ {
		c := src[i]
		start := atLineStart
		atLineStart = c == '\n'
		if c == '\n' {
			line++
		}
		switch top() {
		case '"', 'H':
			if top() == 'H' && start {
				m := markers[len(markers)-1]
				end := bytes.IndexByte(src[i:], '\n')
				if end < 0 {
					end = len(src) - i
				}
				if bytes.Equal(bytes.TrimSpace(src[i:i+end]), m) {
					stack, markers = stack[:len(stack)-1], markers[:len(markers)-1]
					i += end - 1
					continue
				}
			}
			switch {
			case c == '\\' && top() == '"':
				i++ // escaped byte
			case c == '"' && top() == '"':
				stack = stack[:len(stack)-1]
			case (c == '$' || c == '%') && i+1 < len(src) && src[i+1] == c:
				i++ // $${ and %%{ are literal
			case (c == '$' || c == '%') && i+1 < len(src) && src[i+1] == '{':
				i++
				if err := push('$'); err != nil {
					return err
				}
			}
			continue
		}
		// Expression context: top level, brackets or an interpolation.
		if c == '!' || c == '-' {
			unary++
			if unary > MaxNesting {
				return tooDeep("unary operators (! or -)")
			}
			continue
		}
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			unary = 0
		}
		switch c {
		case '#':
			i = skipLine(src, i) - 1
		case '/':
			if i+1 < len(src) && src[i+1] == '/' {
				i = skipLine(src, i) - 1
			} else if i+1 < len(src) && src[i+1] == '*' {
				end := bytes.Index(src[i+2:], []byte("*/"))
				if end < 0 {
					return nil // unterminated comment: hclsyntax reports it
				}
				line += bytes.Count(src[i:i+2+end], []byte("\n"))
				i += 2 + end + 1
			}
		case '"':
			if err := push('"'); err != nil {
				return err
			}
		case '<':
			if m, n, ok := heredoc(src[i:]); ok {
				if err := push('H'); err != nil {
					return err
				}
				markers = append(markers, m)
				i += n - 1 // up to the marker's newline, handled next round
			}
		case '(', '[', '{':
			if err := push(c); err != nil {
				return err
			}
		case ')', ']', '}':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		}
	}
	return nil
}

// skipLine returns the index of the newline ending the line at i (or len).
func skipLine(src []byte, i int) int {
	if end := bytes.IndexByte(src[i:], '\n'); end >= 0 {
		return i + end
	}
	return len(src)
}

// heredoc recognises `<<MARKER` or `<<-MARKER` followed by a newline and
// returns the marker and the length up to (not including) that newline.
func heredoc(s []byte) ([]byte, int, bool) {
	if !bytes.HasPrefix(s, []byte("<<")) {
		return nil, 0, false
	}
	j := 2
	if j < len(s) && s[j] == '-' {
		j++
	}
	k := j
	for k < len(s) && (s[k] == '_' || s[k] >= 'a' && s[k] <= 'z' || s[k] >= 'A' && s[k] <= 'Z' || s[k] >= '0' && s[k] <= '9' && k > j) {
		k++
	}
	if k == j {
		return nil, 0, false
	}
	e := k
	if e < len(s) && s[e] == '\r' {
		e++
	}
	if e >= len(s) || s[e] != '\n' {
		return nil, 0, false
	}
	return s[j:k], e, true
}
