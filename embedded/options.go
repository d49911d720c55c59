package embedded

import (
	"fmt"
	"net/url"
	"os"
	"sync/atomic"

	"go.etcd.io/etcd/server/v3/embed"
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

	tls          bool
	auth         bool
	rootPassword string
	compactMode  string
	compactKeep  string
	quota        int64
	config       func(*embed.Config)
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

// WithTLS serves clients over TLS only, with a certificate authority and
// certificates that Start generates in the data directory (kept there with
// WithDir, so that clients keep trusting a restarted server). Server.TLS
// names the files; ClientConfig trusts the authority. Single member only.
func WithTLS() Option { return func(o *options) { o.tls = true } }

// WithAuth turns on etcd's authentication with a user root, in the role
// root, whose password is rootPassword; ClientConfig logs in as root.
// Single member only.
func WithAuth(rootPassword string) Option {
	return func(o *options) { o.auth, o.rootPassword = true, rootPassword }
}

// WithAutoCompaction has the server compact its history on its own, as
// etcd's --auto-compaction-mode and --auto-compaction-retention: mode
// "periodic" keeps retention worth of time (a duration such as "1h", or a
// number of hours), mode "revision" keeps retention revisions.
func WithAutoCompaction(mode, retention string) Option {
	return func(o *options) { o.compactMode, o.compactKeep = mode, retention }
}

// WithQuotaBackendBytes sets the backend quota, as etcd's
// --quota-backend-bytes: past it the server raises the NOSPACE alarm and
// refuses writes that add data.
func WithQuotaBackendBytes(n int64) Option { return func(o *options) { o.quota = n } }

// WithConfig calls f with each member's etcd configuration once lockstep
// has filled it in, just before the member starts: the way to any server
// setting the other options do not cover. What f changes is its caller's
// responsibility: changing the URLs or the data directory breaks Start.
func WithConfig(f func(*embed.Config)) Option { return func(o *options) { o.config = f } }

// tune applies the options that shape a member's server configuration.
func (o *options) tune(cfg *embed.Config) {
	if o.compactMode != "" {
		cfg.AutoCompactionMode = o.compactMode
		cfg.AutoCompactionRetention = o.compactKeep
	}
	if o.quota > 0 {
		cfg.QuotaBackendBytes = o.quota
	}
	if o.config != nil {
		o.config(cfg)
	}
}

// scheme is the scheme of the client URLs.
func (o *options) scheme() string {
	if o.tls {
		return "https"
	}
	return "http"
}

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
		if err != nil || u.Scheme != o.scheme() || u.Port() == "" {
			return nil, fmt.Errorf("%w: client url %q (want %s://host:port)", ErrInvalidOption, o.clientURL, o.scheme())
		}
	}
	switch {
	case o.auth && o.rootPassword == "":
		return nil, fmt.Errorf("%w: empty root password", ErrInvalidOption)
	case o.quota < 0:
		return nil, fmt.Errorf("%w: backend quota %d bytes", ErrInvalidOption, o.quota)
	case o.compactMode != "" && o.compactMode != "periodic" && o.compactMode != "revision":
		return nil, fmt.Errorf("%w: auto-compaction mode %q (want periodic or revision)", ErrInvalidOption, o.compactMode)
	case o.compactMode != "" && o.compactKeep == "":
		return nil, fmt.Errorf("%w: auto-compaction without a retention", ErrInvalidOption)
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
