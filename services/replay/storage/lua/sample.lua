-- ARGV: n, seed, the signature generation the caller knows, channel
-- -> {-1} unknown table | {0} not admitted now
--    | {1, table size, signature generation, signature if the caller's is stale else '',
--       per draw (seq i64, slot i32, probability f64, priority f64, times_sampled u32),
--       the records as stored (meta fields may be stale): one string, or a list of them when
--       large (saves a copy in Lua)}
if not load_state() then return {-1} end
local n = tonumber(ARGV[1])
local size = st.size
if size == 0 or not can_sample(n) or (st.max_ts > 0 and st.remaining < n) then return {0} end
math.randomseed(tonumber(ARGV[2]))
build_structures()

want_records = true
local info, data, max_ts = {}, {}, st.max_ts
for d = 1, n do
  local slot, prob = sampler.pick(st.skind)
  data[d] = fetch(slot)
  local m = M[slot]
  local ts = math.min(m[3] + 1, TS_MAX)
  set_meta(slot, 3, ts)
  info[d] = struct.pack('<i8i4ddI4', m[1] - 1, slot, prob, m[2], ts)
  if max_ts > 0 then
    st.remaining = st.remaining - 1
    if ts >= max_ts then item_remove(slot, false) end
  end
end

st.samples = st.samples + n
finish(ARGV[4])
local sig = ''
if tonumber(ARGV[3]) ~= st.siggen then sig = st.sig end
if records.unit < 4096 then data = table.concat(data) end
return {1, size, st.siggen, sig, table.concat(info), data}
