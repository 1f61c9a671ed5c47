-- ARGV: n, seed, the signature generation the caller knows, channel
-- -> {-1} unknown table | {0} not admitted now
--    | {1, table size, signature generation, signature if the caller's is stale else '',
--       per draw (seq i64, slot i32, probability f64, priority f64, times_sampled u32), records}
--    | {2, table size, signature generation, signature or '', slots (i32 each), probabilities
--       (f64 each; '' for uniform: 1 / table size), records} when max_times_sampled is 0
-- Records are returned as stored (meta fields as before the batch): one string, or a list of them
-- when large (saves a copy in Lua).
if not load_state() then return {-1} end
local n = tonumber(ARGV[1])
local size = st.size
if size == 0 or not can_sample(n) or (st.max_ts > 0 and st.remaining < n) then return {0} end
math.randomseed(tonumber(ARGV[2]))
build_structures()

want_records = true
local sig = ''
if tonumber(ARGV[3]) ~= st.siggen then sig = st.sig end
local data = {}

if st.max_ts == 0 then
  -- Nothing is removed, so the draws are i.i.d. from the table as it is: the caller derives keys,
  -- priorities and times_sampled from the records (meta fields as before this batch) and the
  -- slots; each drawn record's times_sampled is written once.
  local slots, probs, counts = {}, {}, {}
  local uniform, hwm, g = st.skind == 'uniform', st.hwm, records
  for d = 1, n do
    local slot, prob, rec
    if uniform then -- inline rejection over [0, hwm); the sampler's counts if unlucky
      for _ = 1, 4 do
        local c = min(floor(rand() * hwm), hwm - 1)
        rec = RECS[c]
        if not rec then
          local _, key, off = locate(g, c)
          rec = call('GETRANGE', key, off, off + g.unit - 1)
          RECS[c] = rec
        end
        if #rec >= REC_META and unpack_s('<i8', rec) ~= 0 then slot = c; break end
      end
    else
      slot, prob = sampler.pick(st.skind)
      probs[d] = prob
    end
    if not slot then slot = sampler.pick(st.skind) end
    data[d] = fetch(slot)
    slots[d] = slot
    counts[slot] = (counts[slot] or 0) + 1
  end
  for slot, c in pairs(counts) do
    local _, key, off = locate(g, slot)
    local ts = min(unpack_s('<I4', RECS[slot], 17) + c, TS_MAX)
    call('SETRANGE', key, off + 16, pack('<I4', ts))
  end
  st.samples = st.samples + n
  finish(ARGV[4])
  local packed = {}
  for i = 1, #probs, 4096 do
    local j = min(#probs, i + 4095)
    packed[#packed + 1] = pack('<' .. string.rep('d', j - i + 1), unpack(probs, i, j))
  end
  if g.unit < 4096 then data = table.concat(data) end
  return {2, size, st.siggen, sig, pack_i4(slots), table.concat(packed), data}
end

-- An item reaching max_times_sampled is removed at once: draws in sequence.
local info, max_ts = {}, st.max_ts
for d = 1, n do
  local slot, prob = sampler.pick(st.skind)
  data[d] = fetch(slot)
  local m = M[slot]
  local ts = min(m[3] + 1, TS_MAX)
  set_meta(slot, 3, ts)
  info[d] = pack('<i8i4ddI4', m[1] - 1, slot, prob, m[2], ts)
  st.remaining = st.remaining - 1
  if ts >= max_ts then item_remove(slot, false) end
end
st.samples = st.samples + n
finish(ARGV[4])
if records.unit < 4096 then data = table.concat(data) end
return {1, size, st.siggen, sig, table.concat(info), data}
