package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestOpenRedisErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name, url, prefix, wantErr string
	}{
		{"BadURL", "localhost:6379", "", "expected redis://"},
		{"BracePrefix", "redis://127.0.0.1:1/0", "kbbot:{x}:", "must not contain"},
		// Port 1 refuses connections, so this needs no server.
		{"Unreachable", "redis://:hunter2@127.0.0.1:1/0", "", "connect to Redis at 127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := OpenRedis(ctx, tc.url, tc.prefix)
			if err == nil {
				r.Close()
				t.Fatal("want error")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error %q leaks the password", err)
			}
		})
	}
}

func TestParseRedisURL(t *testing.T) {
	// opts is the part of redis.UniversalOptions a REDIS_URL decides.
	type opts struct {
		Addrs              []string
		DB                 int
		Username, Password string
		MasterName         string
		Cluster, TLS       bool
		DialTimeout        time.Duration
		MaxRetries         int
	}
	summary := func(o *redis.UniversalOptions) opts {
		return opts{
			Addrs: o.Addrs, DB: o.DB, Username: o.Username, Password: o.Password,
			MasterName: o.MasterName, Cluster: o.IsClusterMode, TLS: o.TLSConfig != nil,
			DialTimeout: o.DialTimeout, MaxRetries: o.MaxRetries,
		}
	}
	const dial, retries = redisDialTimeout, redisMaxRetries
	for _, tc := range []struct {
		name    string
		raw     string
		want    opts
		wantErr string // substring; empty means success
	}{
		{name: "Plain", raw: "redis://localhost:6379",
			want: opts{Addrs: []string{"localhost:6379"}, DialTimeout: dial, MaxRetries: retries}},
		{name: "PlainDefaults", raw: " redis://:secret@cache ",
			want: opts{Addrs: []string{"cache:6379"}, Password: "secret", DialTimeout: dial, MaxRetries: retries}},
		{name: "UserPassDB", raw: "redis://bot:pa%40ss@10.0.0.1:6380/2",
			want: opts{Addrs: []string{"10.0.0.1:6380"}, DB: 2, Username: "bot", Password: "pa@ss", DialTimeout: dial, MaxRetries: retries}},
		{name: "TLS", raw: "rediss://cache.example:6380/1",
			want: opts{Addrs: []string{"cache.example:6380"}, DB: 1, TLS: true, DialTimeout: dial, MaxRetries: retries}},
		{name: "QueryOverridesDefaults", raw: "redis://h:1/0?dial_timeout=5s&max_retries=1",
			want: opts{Addrs: []string{"h:1"}, DialTimeout: 5 * time.Second, MaxRetries: 1}},
		{name: "Sentinel", raw: "redis-sentinel://:pw@s1:26379,s2:26380/mymaster/3",
			want: opts{Addrs: []string{"s1:26379", "s2:26380"}, MasterName: "mymaster", DB: 3, Password: "pw", DialTimeout: dial, MaxRetries: retries}},
		{name: "SentinelDefaultPorts", raw: "redis-sentinel://s1,s2/mymaster",
			want: opts{Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "mymaster", DialTimeout: dial, MaxRetries: retries}},
		{name: "Cluster", raw: "redis-cluster://:pw@n1:6379,n2:6379",
			want: opts{Addrs: []string{"n1:6379", "n2:6379"}, Password: "pw", Cluster: true, DialTimeout: dial, MaxRetries: retries}},
		{name: "ClusterOneSeed", raw: "redis-cluster://n1:7000/",
			want: opts{Addrs: []string{"n1:7000"}, Cluster: true, DialTimeout: dial, MaxRetries: retries}},
		{name: "ClusterIPv6", raw: "redis-cluster://[::1]:7000,[::1]",
			want: opts{Addrs: []string{"[::1]:7000", "[::1]:6379"}, Cluster: true, DialTimeout: dial, MaxRetries: retries}},

		{name: "Empty", raw: "", wantErr: "expected redis://"},
		{name: "NoScheme", raw: "localhost:6379", wantErr: "expected redis://"},
		{name: "UnknownScheme", raw: "http://h:1", wantErr: "redis-sentinel://"},
		{name: "BadDB", raw: "redis://:hunter2@h:1/abc", wantErr: "expected redis://"},
		{name: "BadPort", raw: "redis://:hunter2@h:abc/0", wantErr: "expected redis://"},
		{name: "UnknownOption", raw: "redis://h:1/0?bogus=1", wantErr: "expected redis://"},
		{name: "SentinelNoMaster", raw: "redis-sentinel://s1:26379", wantErr: "master name"},
		{name: "SentinelBadDB", raw: "redis-sentinel://:hunter2@s1/m/x", wantErr: "expected redis-sentinel://"},
		{name: "SentinelTooDeep", raw: "redis-sentinel://s1/m/1/2", wantErr: "master name"},
		{name: "SentinelQuery", raw: "redis-sentinel://s1/m?db=1", wantErr: "query parameters"},
		{name: "ClusterPath", raw: "redis-cluster://n1/1", wantErr: "takes no path"},
		{name: "ClusterEmptyHost", raw: "redis-cluster://n1,,n2", wantErr: "empty host"},
		{name: "ClusterBadPort", raw: "redis-cluster://:hunter2@n1:99999", wantErr: "expected redis-cluster://"},
		{name: "ClusterNoHost", raw: "redis-cluster://:7000", wantErr: "missing host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseRedisURL(tc.raw)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("want error containing %q, got %+v", tc.wantErr, summary(o))
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q does not contain %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("error %q leaks the password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := summary(o)
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
			if o.ReadTimeout != redisReadTimeout || o.WriteTimeout != redisWriteTimeout || !o.ContextTimeoutEnabled {
				t.Fatalf("client defaults not applied: read %v write %v ctx %v", o.ReadTimeout, o.WriteTimeout, o.ContextTimeoutEnabled)
			}
		})
	}
}
