// Package store is where kbbot keeps state. Each part lives in a
// sub-package of its own and owns one thing:
//
//   - index: the knowledge index (an embedded file-backed index, or a Qdrant
//     collection) and the conformance suite both pass;
//   - state: conversation history, de-duplication claims and feedback
//     (in process, or in Redis);
//   - queue: the work queue between the webhook and the answer workers
//     (in process, or Redis Streams with leases);
//   - ratelimit: the per-user and per-chat question limits;
//   - retry: how a call to an outside service is tried again (used by
//     store's own parts and by the Feishu, LLM and Qdrant clients).
//
// This package opens the Redis that state, queue and ratelimit share:
// OpenRedis parses REDIS_URL, sets the client options and pings once, and
// main hands the result to each part.
package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisPrefix namespaces every key kbbot writes, so the bot can share
// a Redis with other applications.
const DefaultRedisPrefix = "kbbot:"

// DefaultRetention is how long feedback records (store/state) and work
// given up (store/queue's dead-letter stream) are kept when the caller
// sets no retention (KBBOT_RETENTION): 30 days.
const DefaultRetention = 30 * 24 * time.Hour

// Client defaults. They bound how long one network step may hang when Redis
// is gone; the caller's context still bounds the call as a whole. MaxRetries
// lets a command that hits a connection killed by a Redis restart retry on a
// fresh one instead of failing the user's message.
const (
	redisDialTimeout  = 2 * time.Second
	redisReadTimeout  = 2 * time.Second
	redisWriteTimeout = 2 * time.Second
	redisMaxRetries   = 3
)

// The REDIS_URL forms ParseRedisURL accepts, quoted in its errors.
const (
	redisURLForm    = "redis://[user:pass@]host:port[/db] or rediss://… for TLS"
	sentinelURLForm = "redis-sentinel://[user:pass@]host1:26379,host2:26379/<master>[/db]"
	clusterURLForm  = "redis-cluster://[user:pass@]host1:6379,host2:6379"
)

// ParseRedisURL turns a REDIS_URL into client options. It accepts
//
//	redis://[user:pass@]host:port[/db]            one server
//	rediss://[user:pass@]host:port[/db]           one server over TLS
//	redis-sentinel://[user:pass@]h1:26379,h2:26379/<master>[/db]
//	redis-cluster://[user:pass@]h1:6379,h2:6379
//
// redis:// and rediss:// also take go-redis query options
// (?dial_timeout=5s…). For sentinel URLs the credentials are for the Redis
// master and replicas, not for the sentinels themselves. Errors never repeat
// the URL, because it may carry a password.
func ParseRedisURL(raw string) (*redis.UniversalOptions, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, fmt.Errorf("store: empty Redis URL, expected %s", redisURLForm)
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, fmt.Errorf("store: Redis URL has no scheme, expected %s", redisURLForm)
	}
	var (
		o   *redis.UniversalOptions
		err error
	)
	switch strings.ToLower(scheme) {
	case "redis", "rediss":
		o, err = parseSingleURL(raw)
	case "redis-sentinel":
		o, err = parseSentinelURL(rest)
	case "redis-cluster":
		o, err = parseClusterURL(rest)
	default:
		return nil, fmt.Errorf("store: unknown Redis URL scheme %q, expected %s, %s or %s",
			scheme, redisURLForm, sentinelURLForm, clusterURLForm)
	}
	if err != nil {
		return nil, err
	}
	applyRedisDefaults(o)
	return o, nil
}

func parseSingleURL(raw string) (*redis.UniversalOptions, error) {
	so, err := redis.ParseURL(raw)
	if err != nil {
		// url.Parse errors quote the whole URL, password included.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return nil, fmt.Errorf("store: bad Redis URL, expected %s: %w", redisURLForm, err)
	}
	return &redis.UniversalOptions{
		Addrs:           []string{so.Addr},
		DB:              so.DB,
		Username:        so.Username,
		Password:        so.Password,
		TLSConfig:       so.TLSConfig,
		ClientName:      so.ClientName,
		Protocol:        so.Protocol,
		MaxRetries:      so.MaxRetries,
		MinRetryBackoff: so.MinRetryBackoff,
		MaxRetryBackoff: so.MaxRetryBackoff,
		DialTimeout:     so.DialTimeout,
		ReadTimeout:     so.ReadTimeout,
		WriteTimeout:    so.WriteTimeout,
		PoolFIFO:        so.PoolFIFO,
		PoolSize:        so.PoolSize,
		PoolTimeout:     so.PoolTimeout,
		MinIdleConns:    so.MinIdleConns,
		MaxIdleConns:    so.MaxIdleConns,
		MaxActiveConns:  so.MaxActiveConns,
		ConnMaxIdleTime: so.ConnMaxIdleTime,
		ConnMaxLifetime: so.ConnMaxLifetime,
	}, nil
}

func parseSentinelURL(rest string) (*redis.UniversalOptions, error) {
	a, err := splitMultiHostURL(rest, 26379, sentinelURLForm)
	if err != nil {
		return nil, err
	}
	if len(a.path) < 1 || len(a.path) > 2 {
		return nil, fmt.Errorf("store: Redis sentinel URL needs the master name as its path, expected %s", sentinelURLForm)
	}
	o := &redis.UniversalOptions{
		Addrs:      a.addrs,
		MasterName: a.path[0],
		Username:   a.user,
		Password:   a.pass,
	}
	if len(a.path) == 2 {
		db, err := strconv.Atoi(a.path[1])
		if err != nil || db < 0 {
			return nil, fmt.Errorf("store: Redis sentinel URL has bad database number %q, expected %s", a.path[1], sentinelURLForm)
		}
		o.DB = db
	}
	return o, nil
}

func parseClusterURL(rest string) (*redis.UniversalOptions, error) {
	a, err := splitMultiHostURL(rest, 6379, clusterURLForm)
	if err != nil {
		return nil, err
	}
	if len(a.path) != 0 {
		return nil, fmt.Errorf("store: Redis cluster URL takes no path (cluster has only database 0), expected %s", clusterURLForm)
	}
	return &redis.UniversalOptions{
		Addrs:    a.addrs,
		Username: a.user,
		Password: a.pass,
		// Also with a single seed address, which go-redis would otherwise
		// treat as a plain server.
		IsClusterMode: true,
	}, nil
}

type multiHostURL struct {
	user, pass string
	addrs      []string
	path       []string // non-empty path segments
}

// splitMultiHostURL parses the part after "scheme://" by hand, because
// net/url rejects a comma-separated host list.
func splitMultiHostURL(rest string, defaultPort int, form string) (multiHostURL, error) {
	var a multiHostURL
	bad := func(why string) (multiHostURL, error) {
		return multiHostURL{}, fmt.Errorf("store: bad Redis URL: %s, expected %s", why, form)
	}
	if strings.ContainsAny(rest, "?#") {
		return bad("query parameters are not supported in this form")
	}
	authority, path, _ := strings.Cut(rest, "/")
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		user, pass, _ := strings.Cut(authority[:i], ":")
		var err error
		if a.user, err = url.PathUnescape(user); err != nil {
			return bad("user name is not valid percent-encoding")
		}
		if a.pass, err = url.PathUnescape(pass); err != nil {
			return bad("password is not valid percent-encoding")
		}
		authority = authority[i+1:]
	}
	for _, h := range strings.Split(authority, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			return bad("empty host in host list")
		}
		addr, err := hostPort(h, defaultPort)
		if err != nil {
			return bad(fmt.Sprintf("host %q: %v", h, err))
		}
		a.addrs = append(a.addrs, addr)
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "" {
			continue
		}
		s, err := url.PathUnescape(seg)
		if err != nil {
			return bad(fmt.Sprintf("path segment %q is not valid percent-encoding", seg))
		}
		a.path = append(a.path, s)
	}
	return a, nil
}

// hostPort validates h as host[:port] (IPv6 in brackets) and fills in the
// default port.
func hostPort(h string, defaultPort int) (string, error) {
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port: a bare name, or a bracketed IPv6 literal.
		host, port = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"), strconv.Itoa(defaultPort)
		if strings.ContainsAny(host, "[]") || (strings.Contains(host, ":") && !strings.HasPrefix(h, "[")) {
			return "", fmt.Errorf("malformed host:port")
		}
	}
	if host == "" {
		return "", fmt.Errorf("missing host name")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("bad port %q", port)
	}
	return net.JoinHostPort(host, port), nil
}

// applyRedisDefaults fills in kbbot's client defaults wherever the URL did not
// set a value.
func applyRedisDefaults(o *redis.UniversalOptions) {
	if o.DialTimeout == 0 {
		o.DialTimeout = redisDialTimeout
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = redisReadTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = redisWriteTimeout
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = redisMaxRetries
	}
	// Let a caller's deadline cut a network step short instead of waiting
	// out the read timeout.
	o.ContextTimeoutEnabled = true
	// RESP2: kbbot uses no RESP3 feature (client-side caching, push
	// messages), and under RESP3 go-redis checks for pending pushes before
	// every reply, which showed in the load profile.
	if o.Protocol == 0 {
		o.Protocol = 2
	}
}

// Redis is the connection the Redis-backed parts share, and the prefix of
// every key they write.
type Redis struct {
	Client redis.UniversalClient
	Prefix string
	// Cluster is true for a Redis Cluster, where a Lua script may only
	// touch keys of one slot.
	Cluster bool
}

// OpenRedis connects to the Redis at rawURL (see ParseRedisURL) and pings it
// once so a wrong URL fails at start-up. Keys are prefixed with prefix, or
// DefaultRedisPrefix when it is empty.
func OpenRedis(ctx context.Context, rawURL, prefix string) (*Redis, error) {
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	// A brace in the prefix would become the Cluster hash tag and put every
	// key in one slot, or split a conversation across slots.
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("store: Redis key prefix %q must not contain '{' or '}'", prefix)
	}
	opts, err := ParseRedisURL(rawURL)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewUniversalClient(opts)
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("store: connect to Redis at %s: %w", strings.Join(opts.Addrs, ","), err)
	}
	_, cluster := rdb.(*redis.ClusterClient)
	return &Redis{Client: rdb, Prefix: prefix, Cluster: cluster}, nil
}

// Ping checks that Redis answers, for health checks.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.Client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("store: ping Redis: %w", err)
	}
	return nil
}

// Close releases the connection pool.
func (r *Redis) Close() error {
	if err := r.Client.Close(); err != nil {
		return fmt.Errorf("store: close Redis: %w", err)
	}
	return nil
}
