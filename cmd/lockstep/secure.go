package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// secureFlags are etcdctl's TLS and authentication flags, under etcdctl's
// names. A flag not given falls back on LOCKSTEP_<NAME>, then on etcdctl's
// ETCDCTL_<NAME>, so that an operator's etcdctl environment works as is.
// The key's variable is LOCKSTEP_CERT_KEY: LOCKSTEP_KEY is the key a CMD
// holds.
type secureFlags struct {
	cacert, cert, key  string
	user, password     string
	insecureSkipVerify string // "true" or "false"; "" when not given
}

func (s *secureFlags) register(f *cmdFlags) {
	f.StringVar(&s.cacert, "cacert", "", "verify etcd's certificate with this CA bundle (PEM)")
	f.StringVar(&s.cert, "cert", "", "present this client certificate (PEM)")
	f.StringVar(&s.key, "key", "", "the client certificate's key (PEM)")
	f.StringVar(&s.user, "user", "", "log in as NAME or NAME:PASSWORD")
	f.StringVar(&s.password, "password", "", "the password, when --user gives only a name")
	f.BoolFunc("insecure-skip-tls-verify", "do not verify etcd's certificate (tests only)", func(v string) error {
		if _, err := strconv.ParseBool(v); err != nil {
			return err
		}
		s.insecureSkipVerify = v
		return nil
	})
}

// fromEnv is flag if it was given, else $LOCKSTEP_<name>, else
// $ETCDCTL_<name>; "KEY" is LOCKSTEP_CERT_KEY and ETCDCTL_KEY.
func fromEnv(flag, name string) string {
	if flag != "" {
		return flag
	}
	if v := os.Getenv(lockstepVar(name)); v != "" {
		return v
	}
	return os.Getenv("ETCDCTL_" + name)
}

func lockstepVar(name string) string {
	if name == "KEY" {
		return "LOCKSTEP_CERT_KEY"
	}
	return "LOCKSTEP_" + name
}

// errCredentials is a --user or --password that cannot be used.
var errCredentials = errors.New("credentials")

// apply sets cfg's TLS and credentials. TLS is on when an endpoint is
// https or a TLS flag is given.
func (s *secureFlags) apply(cfg *clientv3.Config) error {
	cacert, cert, key := fromEnv(s.cacert, "CACERT"), fromEnv(s.cert, "CERT"), fromEnv(s.key, "KEY")
	skip, _ := strconv.ParseBool(fromEnv(s.insecureSkipVerify, "INSECURE_SKIP_TLS_VERIFY"))
	https := false
	for _, ep := range cfg.Endpoints {
		https = https || strings.HasPrefix(ep, "https://")
	}
	if https || cacert != "" || cert != "" || key != "" || skip {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: skip}
		if cacert != "" {
			pem, err := os.ReadFile(cacert)
			if err != nil {
				return fmt.Errorf("--cacert: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--cacert %s: no PEM certificate in it", cacert)
			}
		}
		if (cert == "") != (key == "") {
			return errors.New("--cert and --key go together")
		}
		if cert != "" {
			pair, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				return fmt.Errorf("--cert/--key: %w", err)
			}
			tc.Certificates = []tls.Certificate{pair}
		}
		cfg.TLS = tc
	}
	user, password := fromEnv(s.user, "USER"), fromEnv(s.password, "PASSWORD")
	if name, pw, ok := strings.Cut(user, ":"); ok {
		user, password = name, pw
	}
	if user == "" && password != "" {
		return fmt.Errorf("%w: a password without --user", errCredentials)
	}
	cfg.Username, cfg.Password = user, password
	return nil
}

// env is what CMD needs for TLS: the files, under etcdctl's names too. The
// credentials stay with lockstep.
func (s *secureFlags) env() []string {
	var out []string
	for _, v := range []struct{ name, value string }{
		{"CACERT", fromEnv(s.cacert, "CACERT")}, {"CERT", fromEnv(s.cert, "CERT")}, {"KEY", fromEnv(s.key, "KEY")},
	} {
		if v.value != "" {
			out = append(out, lockstepVar(v.name)+"="+v.value, "ETCDCTL_"+v.name+"="+v.value)
		}
	}
	return out
}

// handshakeFailure watches the connection until ctx ends and returns an
// error as soon as gRPC reports a failed TLS handshake, which no wait
// mends: a certificate the client does not trust, or a server that does
// not speak TLS.
func handshakeFailure(ctx context.Context, cli *clientv3.Client) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if msg := lastConnError(ctx, cli); strings.Contains(msg, "handshake") || strings.Contains(msg, "x509") || strings.Contains(msg, "tls:") {
			return fmt.Errorf("%v: %s", cli.Endpoints(), msg)
		}
	}
}
