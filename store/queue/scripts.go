package queue

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

// The Redis queue's scripts, one per step, each in lua/ where a reader sees
// it whole: a step is one round trip, and Redis runs a script atomically.
// Each file starts with what it does and its KEYS and ARGV.

//go:embed lua/enqueue.lua
var enqueueClaimedLua string

// enqueueClaimed is lua/enqueue.lua.
var enqueueClaimed = redis.NewScript(enqueueClaimedLua)

//go:embed lua/acquire.lua
var acquireShardLua string

// acquireShard is lua/acquire.lua.
var acquireShard = redis.NewScript(acquireShardLua)

//go:embed lua/next.lua
var nextJobLua string

// nextJob is lua/next.lua.
var nextJob = redis.NewScript(nextJobLua)

//go:embed lua/renew.lua
var renewLeaseLua string

// renewLease is lua/renew.lua.
var renewLease = redis.NewScript(renewLeaseLua)

//go:embed lua/retry.lua
var retryJobLua string

// retryJob is lua/retry.lua.
var retryJob = redis.NewScript(retryJobLua)

//go:embed lua/release.lua
var releaseLeaseLua string

// releaseLease is lua/release.lua.
var releaseLease = redis.NewScript(releaseLeaseLua)
