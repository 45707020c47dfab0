package client

import (
	"bufio"
	"io"
	"strings"
)

type lineReader struct{ r *bufio.Reader }

func newLineReader(r io.Reader) *lineReader { return &lineReader{r: bufio.NewReaderSize(r, 64<<10)} }

// line returns the next line without its end (\n or \r\n).
func (l *lineReader) line() (string, error) {
	s, err := l.r.ReadString('\n')
	if err != nil && (s == "" || err != io.EOF) {
		return "", err
	}
	return strings.TrimRight(s, "\r\n"), nil
}
