package embedded

import (
	"fmt"
	"net/url"
	"os"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Option configures Start and StartCluster.
type Option func(*options)

type options struct {
	dir       string
	clientURL string
	name      string
	logger    *zap.Logger
	noFsync   bool
}

// WithDir keeps the data in dir instead of a temporary directory, and keeps
// it after Close: Close then Start on the same dir finds the same data. For
// a cluster, each member uses a subdirectory named after it.
func WithDir(dir string) Option { return func(o *options) { o.dir = dir } }

// WithClientURL listens for clients on this URL (for instance
// "http://127.0.0.1:2379") instead of a free loopback port. Start returns
// ErrPortInUse if it is taken. Single member only.
func WithClientURL(u string) Option { return func(o *options) { o.clientURL = u } }

// WithName sets the member name. Default "lockstep". Single member only;
// cluster members are named member0, member1, ...
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithLogger sends all of etcd's logs to lg, unfiltered. Default: warnings
// and errors to stderr, without the expected ones a shutdown produces.
func WithLogger(lg *zap.Logger) Option { return func(o *options) { o.logger = lg } }

// WithoutFsync skips fsync on writes: much faster, and a crash of the
// machine (not the process) can lose acknowledged writes. For tests.
func WithoutFsync() Option { return func(o *options) { o.noFsync = true } }

func buildOptions(opts []Option) (*options, error) {
	o := &options{name: "lockstep"}
	for _, opt := range opts {
		opt(o)
	}
	if o.name == "" {
		return nil, fmt.Errorf("%w: empty member name", ErrInvalidOption)
	}
	if o.clientURL != "" {
		u, err := url.Parse(o.clientURL)
		if err != nil || u.Scheme != "http" || u.Port() == "" {
			return nil, fmt.Errorf("%w: client url %q (want http://host:port)", ErrInvalidOption, o.clientURL)
		}
	}
	return o, nil
}

// quietLogger logs warnings and errors to stderr, so that a newcomer and a
// test see problems and nothing else: it drops etcd's notices about
// settings we chose on purpose, and everything once mute is set, because a
// server that is shutting down reports each closed listener as an error.
func quietLogger(mute *atomic.Bool) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(os.Stderr), zapcore.WarnLevel)
	return zap.New(quietCore{Core: core, mute: mute})
}

// expectedNotices are warnings etcd prints for an embedded loopback server
// configured the way this package configures it on purpose.
var expectedNotices = map[string]bool{
	"Running http and grpc server on single port. This is not recommended for production.": true,
	"simple token is not cryptographically signed":                                         true,
}

type quietCore struct {
	zapcore.Core
	mute *atomic.Bool
}

func (c quietCore) With(fields []zapcore.Field) zapcore.Core {
	return quietCore{Core: c.Core.With(fields), mute: c.mute}
}

func (c quietCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.mute.Load() || expectedNotices[e.Message] {
		return ce
	}
	return c.Core.Check(e, ce)
}
