package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/secauto/secauto/pkg/config"
)

// Rotation of the daemon's log file (logging.file): the file is rotated
// when it reaches logMaxSizeMB; rotated files are gzipped and the newest
// logMaxBackups of them, none older than logMaxAgeDays, are kept. That
// bounds the logs at roughly 100 MiB plus ten compressed files.
const (
	logMaxSizeMB  = 100
	logMaxBackups = 10
	logMaxAgeDays = 90
	// logDirMode is for a log directory that does not exist yet; the files
	// are 0600 like the data directory's, since the log names jobs.
	logDirMode  = 0o700
	logFileMode = 0o600
)

// daemonLogger builds the daemon's logger: records go to stderr (text on a
// terminal, JSON otherwise, unless logging.format says) and, unless
// logging.file is "", to that file, rotated, as JSON (unless logging.format
// is "text"), both at logging.level. A relative logging.file is relative
// to the working directory, like data_directory. The returned closer
// closes the file; call it once the daemon has stopped. A log file that
// cannot be opened is a configuration error (exit 2).
func daemonLogger(stderr io.Writer, tty bool, lc config.Logging) (*slog.Logger, io.Closer, error) {
	console := newLogger(stderr, tty, lc)
	if lc.File == "" {
		return console, nopCloser{}, nil
	}
	lj, path, err := openLogFile(lc.File)
	if err != nil {
		return nil, nil, err
	}
	out := &logFileWriter{w: lj, path: path, stderr: stderr}
	ho := &slog.HandlerOptions{Level: logLevel(lc.Level)}
	var file slog.Handler = slog.NewJSONHandler(out, ho)
	if lc.Format == "text" {
		file = slog.NewTextHandler(out, ho)
	}
	return slog.New(slog.NewMultiHandler(console.Handler(), file)), lj, nil
}

// openLogFile makes sure the log file can be written: its directory exists
// (created 0700) and the file exists with mode 0600 (an older, more open
// file is tightened). Lumberjack opens the file itself on the first write
// and keeps the mode through rotations.
func openLogFile(name string) (*lumberjack.Logger, string, error) {
	path, err := filepath.Abs(name)
	if err != nil {
		return nil, "", logFileError(name, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), logDirMode); err != nil {
		return nil, "", logFileError(name, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, logFileMode)
	if err != nil {
		return nil, "", logFileError(name, err)
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = errors.New("it is not a regular file")
	}
	if err == nil && st.Mode().Perm()&^logFileMode != 0 {
		err = f.Chmod(logFileMode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, "", logFileError(name, err)
	}
	return &lumberjack.Logger{
		Filename:   path,
		MaxSize:    logMaxSizeMB,
		MaxBackups: logMaxBackups,
		MaxAge:     logMaxAgeDays,
		Compress:   true,
	}, path, nil
}

func logFileError(name string, err error) error {
	return &configError{fmt.Errorf("cannot open the log file %s: %v; make its directory writable for this user, set logging.file to another path, or set it to \"\" to log to stderr only", name, err)}
}

// logFileWriter reports the first failed write to the log file on stderr,
// which keeps receiving every record.
type logFileWriter struct {
	w      io.Writer
	path   string
	stderr io.Writer
	once   sync.Once
}

func (l *logFileWriter) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if err != nil {
		l.once.Do(func() {
			fmt.Fprintf(l.stderr, "secauto: writing the log file %s failed: %v; records still go to stderr\n", l.path, err)
		})
	}
	return n, err
}

func logLevel(s string) slog.Level {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return level
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
