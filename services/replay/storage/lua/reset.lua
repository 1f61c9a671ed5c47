-- ARGV: channel. Empties the table and zeroes its counters; the insert sequence goes on (keys are
-- never reused) and a signature fixed by an insert is forgotten.  -> {0} | {-1} unknown table
if not load_state() then return {-1} end
build_structures()
local doomed = {}
for _, g in ipairs(all_segs) do
  for seg = 0, floor((min(g.total, st.hwm) - 1) / g.per) do
    doomed[#doomed + 1] = g.key .. ':' .. seg
  end
end
for i = 1, #doomed, 1000 do call('UNLINK', unpack(doomed, i, min(#doomed, i + 999))) end
for _, c in ipairs(all_cols) do c.pages, c.dirty = {}, {} end
st.size, st.inserts, st.samples, st.deletes, st.hwm, st.nfree, st.remaining = 0, 0, 0, 0, 0, 0, 0
st.s_head, st.s_tail, st.r_head, st.r_tail = -1, -1, -1, -1
if st.fixed_sig == 0 then
  call('HSET', HASH, 'sig', '', 'template', '', 'rec_size', 0, 'siggen', st.siggen + 1)
end
finish(ARGV[1])
return {0}
