-- ARGV: tables set key, table name, config JSON, then field, value, ... of the static config.
-- -> {1} created | {0, existing config JSON}
local existing = call('HGET', HASH, 'config')
if existing then return {0, existing} end
call('HSET', HASH, 'config', ARGV[3], 'size', 0, 'inserts', 0, 'samples', 0, 'deletes', 0,
  'hwm', 0, 'nfree', 0, 'next_seq', 0, 'remaining', 0, 's_head', -1, 's_tail', -1, 'r_head', -1,
  'r_tail', -1, unpack(ARGV, 4))
call('SADD', ARGV[1], ARGV[2])
return {1}
