package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"
	"go.yaml.in/yaml/v3"

	"github.com/lockstep-go/lockstep/cache"
)

// A Decoder turns the cached prefix, at one revision, into a
// configuration value. A decoder of one key (JSON, YAML, TOML) reads only
// that key; a user's decoder can read the whole snapshot.
type Decoder[T any] interface {
	Decode(snap cache.Snapshot) (T, error)
}

// DecoderFunc makes a function a Decoder.
type DecoderFunc[T any] func(snap cache.Snapshot) (T, error)

// Decode calls f.
func (f DecoderFunc[T]) Decode(snap cache.Snapshot) (T, error) { return f(snap) }

// keyDecoder decodes one key holding a document.
type keyDecoder[T any] struct {
	key    string
	format string
	decode func(data []byte, v *T) error
}

func (d keyDecoder[T]) Decode(snap cache.Snapshot) (T, error) {
	var v T
	kv, ok := snap.Get(d.key)
	if !ok {
		return v, fmt.Errorf("%w: key %s does not exist at revision %d", ErrDecode, d.key, snap.Revision())
	}
	if err := d.decode([]byte(kv.Value), &v); err != nil {
		return v, fmt.Errorf("%w: %s %s at revision %d: %w", ErrDecode, d.format, d.key, kv.ModRevision, err)
	}
	return v, nil
}

// keys says which keys the decoder reads: a version of the prefix that
// changed none of them is no new version of the configuration.
func (d keyDecoder[T]) keys() []string { return []string{d.key} }

// JSON decodes the JSON document under key (encoding/json's rules: fields
// the type does not have are ignored).
func JSON[T any](key string) Decoder[T] {
	return keyDecoder[T]{key: key, format: "JSON", decode: func(data []byte, v *T) error {
		return json.Unmarshal(data, v)
	}}
}

// YAML decodes the YAML document under key (go.yaml.in/yaml/v3).
func YAML[T any](key string) Decoder[T] {
	return keyDecoder[T]{key: key, format: "YAML", decode: func(data []byte, v *T) error {
		return yaml.Unmarshal(data, v)
	}}
}

// TOML decodes the TOML document under key (github.com/BurntSushi/toml).
func TOML[T any](key string) Decoder[T] {
	return keyDecoder[T]{key: key, format: "TOML", decode: func(data []byte, v *T) error {
		_, err := toml.NewDecoder(bytes.NewReader(data)).Decode(v)
		return err
	}}
}

// Map decodes the whole prefix as a map from each key, relative to the
// prefix, to its value: "/config/app/db/host" under "/config/app/" is
// "db/host".
func Map() Decoder[map[string]string] {
	return DecoderFunc[map[string]string](func(snap cache.Snapshot) (map[string]string, error) {
		m := make(map[string]string, snap.Len())
		for k, kv := range snap.All() {
			m[strings.TrimPrefix(k, snap.Prefix())] = kv.Value
		}
		return m, nil
	})
}
