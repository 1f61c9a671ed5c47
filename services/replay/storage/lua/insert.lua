-- ARGV: signature, template JSON, record size, n, priorities (f64 * n), records, seed, channel
-- -> {-1} unknown table | {-2, signature} other signature | {0} not admitted now
--    | {1, first insert sequence, slots (i32 * n)}
if not load_state() then return {-1} end
local sig, n = ARGV[1], tonumber(ARGV[4])
if st.sig ~= '' and st.sig ~= sig then return {-2, st.sig} end
if n > st.max_size then return redis.error_reply('rlfleet: batch larger than max_size') end
if not can_insert(n) then return {0} end
if st.sig == '' then
  st.sig, st.rec_size, st.siggen = sig, tonumber(ARGV[3]), st.siggen + 1
  redis.call('HSET', HASH, 'sig', sig, 'template', ARGV[2], 'rec_size', st.rec_size,
    'siggen', st.siggen)
end
math.randomseed(tonumber(ARGV[7]))
build_structures()

-- make room first: the remover chooses among the items already in the table
local evicted = {}
for i = 1, st.size + n - st.max_size do
  local victim = remover.pick(st.rkind)
  item_remove(victim, true)
  evicted[i] = victim
end
-- slots: the newest free ones (in stack order), then the evicted ones, then fresh ones
local slots, take = {}, math.min(n - #evicted, st.nfree)
for i = st.nfree - take, st.nfree - 1 do slots[#slots + 1] = free:get(i, 1) end
st.nfree = st.nfree - take
local refill = #slots
for i = 1, #evicted do slots[#slots + 1] = evicted[i] end
for i = #slots + 1, n do
  slots[i] = st.hwm
  st.hwm = st.hwm + 1
end
local prios = ARGV[5]
for i = 1, n do
  item_add(slots[i], st.next_seq + i, struct.unpack('<d', prios, 8 * i - 7), i > refill and i <= refill + #evicted)
end

if st.rec_size > 0 then write_records(slots, ARGV[6]) end

local first = st.next_seq
st.next_seq = st.next_seq + n
st.inserts = st.inserts + n
finish(ARGV[8])
return {1, first, pack_i4(slots), st.siggen}
