-- ARGV: updates (slot i32, tag i64, priority f64 each; distinct), deletes (slot i32, tag i64 each;
-- distinct), channel. A key is live while the tag of its slot's record is tag.  -> {updated, deleted}
if not load_state() then return {-1, 0} end
build_structures()
local ups, dels = ARGV[1], ARGV[2]
local updated, deleted = 0, 0
for o = 1, #ups, 20 do
  local slot, tag, p = unpack_s('<i4i8d', ups, o)
  if slot < st.hwm and meta(slot)[1] == tag then
    set_meta(slot, 2, p)
    sampler.update(slot, p)
    if not shared_struct then remover.update(slot, p) end
    updated = updated + 1
  end
end
for o = 1, #dels, 12 do
  local slot, tag = unpack_s('<i4i8', dels, o)
  if slot < st.hwm and meta(slot)[1] == tag then
    item_remove(slot, false)
    deleted = deleted + 1
  end
end
if updated + deleted > 0 then finish(ARGV[3]) end
return {updated, deleted}
