-- ARGV: signature, template JSON, leaves' size per record, n, records (see common.lua), the
-- caller's guess of the insert sequence (the records' tags follow it), seed, channel
-- -> {-1} unknown table | {-2, signature} other signature | {0} not admitted now
--    | {1, first insert sequence, slots (i32 * n)}
if not load_state() then return {-1} end
local sig, n = ARGV[1], tonumber(ARGV[4])
if st.sig ~= '' and st.sig ~= sig then return {-2, st.sig} end
if n > st.max_size then return redis.error_reply('rlfleet: batch larger than max_size') end
if not can_insert(n) then return {0} end
if st.sig == '' then
  st.sig, st.rec_size, st.siggen = sig, tonumber(ARGV[3]), st.siggen + 1
  call('HSET', HASH, 'sig', sig, 'template', ARGV[2], 'rec_size', st.rec_size,
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
local slots, take = {}, min(n - #evicted, st.nfree)
for i = st.nfree - take, st.nfree - 1 do slots[#slots + 1] = free:get(i, 1) end
st.nfree = st.nfree - take
local refill = #slots
for i = 1, #evicted do slots[#slots + 1] = evicted[i] end
for i = #slots + 1, n do
  slots[i] = st.hwm
  st.hwm = st.hwm + 1
end
local blob, unit = write_records(slots, ARGV[5], st.next_seq, tonumber(ARGV[6])), records.unit
for i = 1, n do
  local p = 0
  if by_priority then p = unpack_s('<d', blob, (i - 1) * unit + 9) end
  item_add(slots[i], p, st.next_seq + i, i > refill and i <= refill + #evicted)
end

local first = st.next_seq
st.next_seq = st.next_seq + n
st.inserts = st.inserts + n
finish(ARGV[8])
return {1, first, pack_i4(slots), st.siggen}
