package etcdserver

import (
	"context"
	"log/slog"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// slogCore is a zapcore.Core that forwards etcd's zap records to a
// slog.Logger. Only records at or above minLevel are forwarded.
type slogCore struct {
	log      *slog.Logger
	minLevel zapcore.Level
	fields   []zapcore.Field
}

var _ zapcore.Core = (*slogCore)(nil)

// newZapLogger returns a zap logger that forwards records at error level and
// above to log; a nil log discards everything.
func newZapLogger(log *slog.Logger) *zap.Logger {
	if log == nil {
		return zap.NewNop()
	}
	return zap.New(&slogCore{log: log, minLevel: zapcore.ErrorLevel})
}

func (c *slogCore) Enabled(l zapcore.Level) bool { return l >= c.minLevel }

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	clone := *c
	clone.fields = append(append([]zapcore.Field(nil), c.fields...), fields...)
	return &clone
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	attrs := make([]slog.Attr, 0, len(enc.Fields)+1)
	if e.LoggerName != "" {
		attrs = append(attrs, slog.String("logger", e.LoggerName))
	}
	for k, v := range enc.Fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	level := slog.LevelError
	if e.Level < zapcore.ErrorLevel {
		level = slog.LevelWarn
	}
	if isShutdownNoise(e.Message, enc.Fields) {
		level = slog.LevelDebug
	}
	c.log.LogAttrs(context.Background(), level, "etcd: "+e.Message, attrs...)
	return nil
}

func (c *slogCore) Sync() error { return nil }

// isShutdownNoise tells the listener errors etcd logs while it is being
// closed (every clean stop) from real serving failures.
func isShutdownNoise(msg string, fields map[string]any) bool {
	if msg != "setting up serving from embedded etcd failed." {
		return false
	}
	err, _ := fields["error"].(string)
	for _, s := range []string{"server closed", "Server closed", "use of closed network connection"} {
		if strings.Contains(err, s) {
			return true
		}
	}
	return false
}
