-- ARGV: tables set key, table name, config JSON, then field, value, ... of the initial state.
-- -> {1} created | {0, existing config JSON}
local existing = redis.call('HGET', HASH, 'config')
if existing then return {0, existing} end
redis.call('HSET', HASH, 'config', ARGV[3], unpack(ARGV, 4))
redis.call('SADD', ARGV[1], ARGV[2])
return {1}
