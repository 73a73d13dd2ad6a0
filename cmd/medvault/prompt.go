package main

import (
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"golang.org/x/term"
)

// readHidden reads one line from the terminal tty without echoing it, for
// a passphrase. The terminal is in raw mode while it reads and is restored
// before it returns, so control keys arrive as bytes: Ctrl-C cancels, and
// Ctrl-D on an empty line cancels. (term.ReadPassword keeps the terminal
// cooked: a Ctrl-D there makes every read return nothing, which it reads
// again forever, and a Ctrl-C kills the process with echo still off.)
//
// Backspace removes the last character, Ctrl-U the whole line. A line
// longer than maxPassphrase bytes is refused. The bytes read are wiped from
// every buffer but the one returned.
func readHidden(tty *os.File, prompt string) ([]byte, error) {
	fd := int(tty.Fd())
	state, err := term.MakeRaw(fd)
	if err != nil {
		return nil, fmt.Errorf("terminal: %w", err)
	}
	defer term.Restore(fd, state)
	fmt.Fprint(tty, prompt)
	// Raw mode does not turn "\n" into a new line: say "\r\n".
	defer fmt.Fprint(tty, "\r\n")
	line := make([]byte, 0, 128)
	var b [1]byte
	for {
		n, err := tty.Read(b[:])
		if n == 0 {
			clear(line)
			if err == nil || err == io.EOF {
				return nil, errCancelled
			}
			return nil, fmt.Errorf("terminal: %w", err)
		}
		switch c := b[0]; c {
		case '\r', '\n':
			return line, nil
		case 3: // Ctrl-C
			clear(line)
			return nil, errCancelled
		case 4: // Ctrl-D
			if len(line) == 0 {
				return nil, errCancelled
			}
		case 127, '\b': // Backspace, Ctrl-H
			if len(line) > 0 {
				_, size := utf8.DecodeLastRune(line)
				clear(line[len(line)-size:])
				line = line[:len(line)-size]
			}
		case 21: // Ctrl-U
			clear(line)
			line = line[:0]
		default:
			if len(line) == maxPassphrase {
				clear(line)
				return nil, usagef("passphrase longer than %d bytes", maxPassphrase)
			}
			if len(line) == cap(line) {
				grown := make([]byte, len(line), 2*cap(line))
				copy(grown, line)
				clear(line)
				line = grown
			}
			line = append(line, c)
		}
	}
}
