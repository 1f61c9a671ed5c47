-- Shared by every table script (the store prepends it to each one).
--
-- KEYS[1] is the table's key prefix ("<prefix>:{t:<name>}"); every key of the table starts with it,
-- so a table lives in one cluster hash slot. There are no per-item keys:
--   <p>:h              hash: config fields, counters, list ends, signature
--   <p>:d:<s>          per slot a record: tag (insert sequence + 1, 0 = empty) i64, priority f64,
--                      times_sampled u32, then the leaves in signature order (rec_size bytes)
--   <p>:free:<s>       stack of free slots (i32)
--   <p>:<role>...:<s>  the sampler's ("s") and remover's ("r") structures (constructors below)
-- Every column is cut into segments <s>: strings allocated once at their final size (SET of zeros;
-- 256 KiB, or larger for large units, the last one cut to max_size), so Redis never over-allocates
-- while a table fills (SETRANGE growth would add up to 100%) and a record never straddles two.
-- Columns are read through a page cache and written back in runs at the end of the script, so a
-- batch touching neighbouring slots costs one GETRANGE / SETRANGE per run, not per item.

local call, floor, min, random = redis.call, math.floor, math.min, math.random
local pack, unpack_s = struct.pack, struct.unpack

local BASE = KEYS[1]
local HASH = BASE .. ':h'
local FANOUT = 16
local TS_MAX = 4294967295

local st = {}
local FIELDS = {'max_size', 'max_ts', 'skind', 'sexp', 'rkind', 'rexp', 'spi', 'min_size',
  'min_diff', 'max_diff', 'rec_size', 'sig', 'siggen', 'fixed_sig', 'size', 'inserts', 'samples',
  'deletes', 'hwm', 'nfree', 'next_seq', 'remaining', 's_head', 's_tail', 'r_head', 'r_tail'}
local STRINGS = {skind = true, rkind = true, sig = true}
local DYNAMIC = {'size', 'inserts', 'samples', 'deletes', 'hwm', 'nfree', 'next_seq', 'remaining',
  's_head', 's_tail', 'r_head', 'r_tail'}

local function load_state()
  local v = call('HMGET', HASH, unpack(FIELDS))
  if not v[1] then return false end
  for i, f in ipairs(FIELDS) do
    if STRINGS[f] then st[f] = v[i] else st[f] = tonumber(v[i]) end
  end
  return true
end

-- Segments: `total` units of `unit` bytes, `per` units per string.
local all_segs = {}
local function segments(key, unit, total)
  local alloc = 262144 -- a jemalloc size class, like every power of two
  while alloc < 64 * unit and alloc < 268435456 do alloc = alloc * 2 end
  local g = {key = key, unit = unit, total = total, ready = {}, keys = {},
    per = math.max(1, floor((alloc - 10) / unit))} -- 10: sds header and terminator
  all_segs[#all_segs + 1] = g
  return g
end

-- unit index -> segment, its key, byte offset of the unit in it
local function locate(g, u)
  local s = floor(u / g.per)
  local key = g.keys[s]
  if not key then
    key = g.key .. ':' .. s
    g.keys[s] = key
  end
  return s, key, (u - s * g.per) * g.unit
end

-- Before writing into segment s: make sure it exists at its full size.
local function prepare(g, s, key)
  if g.ready[s] then return end
  if call('EXISTS', key) == 0 then
    call('SET', key, string.rep('\0', min(g.per, g.total - s * g.per) * g.unit))
  end
  g.ready[s] = true
end

-- Paged, write-back column of fixed-size elements (nf numeric fields each), `page` per unit.
local Col = {}
Col.__index = Col

local function column(name, fmt, nf, size, page, elements)
  local c = setmetatable({nf = nf, page = page, pbytes = size * page,
    pfmt = '<' .. string.rep(fmt, page), pages = {}, dirty = {}}, Col)
  c.seg = segments(BASE .. ':' .. name, c.pbytes, math.ceil(elements / page))
  return c
end

function Col:load(p)
  local pg = self.pages[p]
  if pg then return pg end
  local b = self.pbytes
  local _, key, off = locate(self.seg, p)
  local s = call('GETRANGE', key, off, off + b - 1)
  if #s < b then s = s .. string.rep('\0', b - #s) end
  pg = {unpack_s(self.pfmt, s)}
  pg[#pg] = nil -- struct.unpack's trailing "next position"
  self.pages[p] = pg
  return pg
end

-- page table and the index of the element's field 0 in it
function Col:at(i)
  local p = floor(i / self.page)
  return self:load(p), (i - p * self.page) * self.nf, p
end

function Col:get(i, f)
  local pg, o = self:at(i)
  return pg[o + f]
end

function Col:set(i, f, v)
  local pg, o, p = self:at(i)
  pg[o + f] = v
  self.dirty[p] = true
end

function Col:put(i, a, b, c)
  if self.page == 1 then
    self.pages[i] = {a, b, c}
    self.dirty[i] = true
    return
  end
  local pg, o, p = self:at(i)
  pg[o + 1] = a
  if self.nf > 1 then pg[o + 2] = b end
  if self.nf > 2 then pg[o + 3] = c end
  self.dirty[p] = true
end

function Col:flush()
  local idx = {}
  for p in pairs(self.dirty) do idx[#idx + 1] = p end
  if #idx == 0 then return end
  table.sort(idx)
  local g, i, n, nf = self.seg, 1, #idx, self.nf * self.page
  while i <= n do
    local s, key, off = locate(g, idx[i])
    local j, last = i, (s + 1) * g.per - 1
    while j < n and idx[j + 1] == idx[j] + 1 and idx[j + 1] <= last do j = j + 1 end
    local parts = {}
    for k = i, j do parts[#parts + 1] = pack(self.pfmt, unpack(self.pages[idx[k]], 1, nf)) end
    prepare(g, s, key)
    call('SETRANGE', key, off, table.concat(parts))
    i = j + 1
  end
  self.dirty = {}
end

local all_cols = {}
local function new_column(...)
  local c = column(...)
  all_cols[#all_cols + 1] = c
  return c
end

local free -- created by build_structures (it needs st.max_size)

local function rand()
  -- Redis' math.random has 31 bits; two draws give a full double in [0, 1)
  return random() + random() / 2147483647
end

-- Records, and their meta fields: M[slot] = {tag, priority, times_sampled} as read or written by
-- this script; flush_meta writes back the changed ones. RECS[slot]: a record read by this script.
local REC_META = 20
local records
local M, RECS, dirty_meta = {}, {}, {}

local function unpack_meta(slot, s)
  local m
  if #s < REC_META then m = {0, 0, 0} else m = {unpack_s('<i8dI4', s)} end
  M[slot] = m
  return m
end

local function meta(slot)
  local m = M[slot]
  if m then return m end
  local _, key, off = locate(records, slot)
  return unpack_meta(slot, call('GETRANGE', key, off, off + REC_META - 1))
end

-- the whole record as stored (its meta fields may be stale: M has the current ones)
local function fetch(slot)
  local rec = RECS[slot]
  if rec then return rec end
  local _, key, off = locate(records, slot)
  rec = call('GETRANGE', key, off, off + records.unit - 1)
  RECS[slot] = rec
  if not M[slot] then unpack_meta(slot, rec) end
  return rec
end

local function set_meta(slot, f, v)
  meta(slot)[f] = v
  dirty_meta[slot] = true
end

-- In sample.lua a live check reads the whole record (it is needed next anyway).
local want_records = false
local function live_tag(slot)
  if want_records then fetch(slot) end
  return meta(slot)[1]
end

-- Writes record k of blob to slots[k], one SETRANGE per run of consecutive slots in a segment.
-- The records carry their meta fields: tags tag0 + k (the caller's guess of the insert sequence;
-- rewritten here if another insert came first), times_sampled 0.
local function write_records(slots, blob, tag0, guess)
  local g, n, rs, i = records, #slots, records.unit, 1
  if guess ~= tag0 then
    local parts = {}
    for k = 1, n do
      parts[2 * k - 1] = pack('<i8', tag0 + k)
      parts[2 * k] = string.sub(blob, (k - 1) * rs + 9, k * rs)
    end
    blob = table.concat(parts)
  end
  while i <= n do
    local s, key, off = locate(g, slots[i])
    local j, last = i, (s + 1) * g.per - 1
    while j < n and slots[j + 1] == slots[j] + 1 and slots[j + 1] <= last do j = j + 1 end
    local part = blob
    if i > 1 or j < n then part = string.sub(blob, (i - 1) * rs + 1, j * rs) end
    prepare(g, s, key)
    call('SETRANGE', key, off, part)
    i = j + 1
  end
  for k = 1, n do
    local slot = slots[k]
    M[slot], RECS[slot], dirty_meta[slot] = nil, nil, nil
  end
  return blob
end

local function flush_meta()
  for slot in pairs(dirty_meta) do
    local m, s, key, off = M[slot], locate(records, slot)
    prepare(records, s, key)
    call('SETRANGE', key, off, pack('<i8dI4', m[1], m[2], m[3]))
  end
  dirty_meta = {}
end

-- Structures. Each has add(slot, p, tag), remove(slot), update(slot, p), replace(slot, p, tag)
-- (the slot's item was swapped for a new one while the structure holds it), pick(kind) -> slot, prob,
-- and optionally settle() (brings derived data up to date before the columns are written).
-- s.n counts the slots a structure holds (a replaced slot stays in it).

local function tree(role, a)
  -- FANOUT-ary tree over the slots: level L >= 1 holds per node the live count (and, when
  -- prioritized, the sum of p^a) of its subtree; the children of node j are page j of level L - 1,
  -- level 0 holds p^a per slot (prioritized only). Sums are recomputed from the children (no
  -- drift); dirty nodes are propagated once per batch, before a pick.
  -- Uniform picks (uniform sampler, or prioritized with every weight zero): first by rejection over
  -- [0, hwm) (the live test is the meta read the draw needs anyway), then by the counts.
  local weighted = a ~= nil
  local levels, depth, n = {}, 0, st.max_size
  if weighted then levels[0] = new_column(role .. 't0', 'd', 1, 8, FANOUT, n) end
  while n > 1 do
    n = math.ceil(n / FANOUT)
    depth = depth + 1
    if weighted then
      levels[depth] = new_column(role .. 't' .. depth, 'dI4', 2, 12, FANOUT, n)
    else
      levels[depth] = new_column(role .. 'c' .. depth, 'I4', 1, 4, FANOUT, n)
    end
  end
  local CNT = weighted and 2 or 1
  local dirty = {}
  for L = 1, depth do dirty[L] = {} end
  local s = {n = st.size}
  local function set_leaf(slot, w, dcount)
    if weighted then levels[0]:set(slot, 1, w) end
    if depth > 0 then
      local j = floor(slot / FANOUT)
      if weighted then dirty[1][j] = true end
      if dcount ~= 0 then
        levels[1]:set(j, CNT, levels[1]:get(j, CNT) + dcount)
        dirty[1][j] = true
      end
    end
  end
  function s.settle()
    for L = 1, depth do
      local lower, here, up = levels[L - 1], levels[L], dirty[L + 1]
      for j in pairs(dirty[L]) do
        if L > 1 or weighted then
          local pg = lower:load(j)
          local sum, count = 0, 0
          if L == 1 then
            for k = 1, FANOUT do sum = sum + pg[k] end
          elseif weighted then
            for k = 1, 2 * FANOUT, 2 do sum = sum + pg[k]; count = count + pg[k + 1] end
          else
            for k = 1, FANOUT do count = count + pg[k] end
          end
          if L > 1 then here:set(j, CNT, count) end
          if weighted then here:set(j, 1, sum) end
        end
        if up then up[floor(j / FANOUT)] = true end
      end
      dirty[L] = {}
    end
  end
  function s.add(slot, p)
    set_leaf(slot, weighted and p ^ a, 1)
    s.n = s.n + 1
  end
  function s.remove(slot)
    set_leaf(slot, 0, -1)
    s.n = s.n - 1
  end
  function s.update(slot, p)
    if weighted then set_leaf(slot, p ^ a, 0) end
  end
  s.replace = s.update
  local function uniform_pick()
    local live = s.n
    for _ = 1, 4 do
      local slot = min(floor(rand() * st.hwm), st.hwm - 1)
      if live_tag(slot) ~= 0 then return slot, 1 / live end
    end
    local r, j = min(floor(rand() * live), live - 1), 0
    for L = depth, 2, -1 do
      local pg, nf, pick = levels[L - 1]:load(j), levels[L - 1].nf, nil
      for k = 0, FANOUT - 1 do
        local c = pg[k * nf + CNT]
        if r < c then pick = k; break end
        r = r - c
      end
      if not pick then error('rlfleet: tree counts out of sync') end
      j = j * FANOUT + pick
    end
    for slot = j * FANOUT, j * FANOUT + FANOUT - 1 do
      if meta(slot)[1] ~= 0 then
        if r == 0 then return slot, 1 / live end
        r = r - 1
      end
    end
    error('rlfleet: tree counts out of sync')
  end
  function s.pick()
    if depth == 0 then return 0, 1 end
    s.settle()
    if not weighted then return uniform_pick() end
    local total = levels[depth]:get(0, 1)
    if total <= 0 then return uniform_pick() end
    local target, j = rand() * total, 0
    for L = depth, 1, -1 do
      local lower = levels[L - 1]
      local pg, nf = lower:load(j), lower.nf
      local cum, pick, last = 0, nil, nil
      for k = 0, FANOUT - 1 do
        local w = pg[k * nf + 1]
        if w > 0 then
          if target < cum + w then pick = k; break end
          cum, last = cum + w, k
        end
      end
      pick = pick or last
      target = target - cum
      j = j * FANOUT + pick
    end
    return j, levels[0]:get(j, 1) / total
  end
  return s
end

local function order_list(role)
  -- doubly-linked list of slots in insertion order; fifo picks the head, lifo the tail
  local links = new_column(role .. 'l', 'i4i4', 2, 8, 8, st.max_size) -- prev, next (-1: none)
  local H, T = role .. '_head', role .. '_tail'
  local s = {}
  function s.add(slot)
    local t = st[T]
    links:put(slot, t, -1)
    if t >= 0 then links:set(t, 2, slot) else st[H] = slot end
    st[T] = slot
  end
  function s.remove(slot)
    local pg, o = links:at(slot)
    local prev, nxt = pg[o + 1], pg[o + 2]
    if prev >= 0 then links:set(prev, 2, nxt) else st[H] = nxt end
    if nxt >= 0 then links:set(nxt, 1, prev) else st[T] = prev end
  end
  function s.update() end
  function s.replace(slot) s.remove(slot); s.add(slot) end
  function s.pick(kind)
    if kind == 'fifo' then return st[H], 1 end
    return st[T], 1
  end
  return s
end

local function heap(role, sign)
  -- binary heap of (sign * priority, tag, slot): min_heap sign 1, max_heap -1; ties: oldest first
  local ent = new_column(role .. 'h', 'di8i4', 3, 20, 1, st.max_size)
  local hpos = new_column(role .. 'hp', 'i4', 1, 4, 1, st.max_size)
  local s = {n = st.size}
  local function place(i, k, t, slot) ent:put(i, k, t, slot); hpos:put(slot, i) end
  local function sift(i, n, k, t, slot)
    while i > 0 do -- up
      local parent = floor((i - 1) / 2)
      local pe = ent:at(parent)
      if k < pe[1] or (k == pe[1] and t < pe[2]) then
        place(i, pe[1], pe[2], pe[3])
        i = parent
      else break end
    end
    while true do -- down
      local c = 2 * i + 1
      if c >= n then break end
      local ce = ent:at(c)
      if c + 1 < n then
        local re = ent:at(c + 1)
        if re[1] < ce[1] or (re[1] == ce[1] and re[2] < ce[2]) then c, ce = c + 1, re end
      end
      if ce[1] < k or (ce[1] == k and ce[2] < t) then
        place(i, ce[1], ce[2], ce[3])
        i = c
      else break end
    end
    place(i, k, t, slot)
  end
  function s.add(slot, p, tag)
    s.n = s.n + 1
    sift(s.n - 1, s.n, sign * p, tag, slot)
  end
  function s.remove(slot)
    local i, last = hpos:get(slot, 1), s.n - 1
    s.n = last
    if i ~= last then
      local e = ent:at(last)
      sift(i, last, e[1], e[2], e[3])
    end
  end
  function s.update(slot, p, tag)
    sift(hpos:get(slot, 1), s.n, sign * p, tag or meta(slot)[1], slot)
  end
  s.replace = s.update
  function s.pick() return ent:get(0, 3), 1 end
  return s
end

local function structure(kind, exponent, role)
  if kind == 'uniform' then return tree(role, nil) end
  if kind == 'prioritized' then return tree(role, exponent) end
  if kind == 'fifo' or kind == 'lifo' then return order_list(role) end
  return heap(role, kind == 'min_heap' and 1 or -1)
end

-- The sampler's structure, the remover's, whether they are one, and whether they use priorities.
local sampler, remover, shared_struct, by_priority
local function build_structures()
  free = new_column('free', 'i4', 1, 4, 1, st.max_size)
  records = segments(BASE .. ':d', REC_META + st.rec_size, st.max_size)
  local sk, rk = st.skind, st.rkind
  sampler = structure(sk, st.sexp, 's')
  local lists = (sk == 'fifo' or sk == 'lifo') and (rk == 'fifo' or rk == 'lifo')
  shared_struct = lists or (sk == rk and st.sexp == st.rexp)
  if shared_struct then remover = sampler else remover = structure(rk, st.rexp, 'r') end
  by_priority = not (lists or ((sk == 'uniform' or sk == 'fifo' or sk == 'lifo')
    and (rk == 'uniform' or rk == 'fifo' or rk == 'lifo')))
end

-- `replaced`: the slot was freed by item_remove(slot, true) in this script. The record (and its
-- meta fields) is written by write_records.
local function item_add(slot, p, tag, replaced)
  if replaced and not shared_struct then
    sampler.replace(slot, p, tag)
  else
    sampler.add(slot, p, tag)
  end
  if not shared_struct then remover.add(slot, p, tag) end
  st.size = st.size + 1
  if st.max_ts > 0 then st.remaining = st.remaining + st.max_ts end
end

-- Removes a live item; the slot goes to the free stack unless `keep` (it is refilled in this
-- script, and a sampler-only structure keeps it until then, to replace it in place).
local function item_remove(slot, keep)
  if st.max_ts > 0 then st.remaining = st.remaining - (st.max_ts - meta(slot)[3]) end
  M[slot] = {0, 0, 0} -- a kept slot's record is rewritten anyway
  if not keep then dirty_meta[slot] = true end
  if not keep or shared_struct then sampler.remove(slot) end
  if not shared_struct then remover.remove(slot) end
  st.size = st.size - 1
  st.deletes = st.deletes + 1
  if not keep then
    free:put(st.nfree, slot)
    st.nfree = st.nfree + 1
  end
end

local function can_insert(n)
  return st.inserts + n - st.deletes <= st.min_size
    or (st.inserts + n) * st.spi - st.samples <= st.max_diff
end

local function can_sample(n)
  return st.inserts - st.deletes >= st.min_size
    and st.inserts * st.spi - st.samples - n >= st.min_diff
end

local function finish(channel)
  for _, s in ipairs({sampler, remover}) do
    if s.settle then s.settle() end
  end
  for _, c in ipairs(all_cols) do c:flush() end
  flush_meta()
  local args = {}
  for _, f in ipairs(DYNAMIC) do args[#args + 1] = f; args[#args + 1] = st[f] end
  call('HSET', HASH, unpack(args))
  call('PUBLISH', channel, '1')
end

-- '<i4' * #t, packed in pieces (unpack is limited by the C stack)
local function pack_i4(t)
  local parts = {}
  for i = 1, #t, 4096 do
    local j = min(#t, i + 4095)
    parts[#parts + 1] = pack('<' .. string.rep('i4', j - i + 1), unpack(t, i, j))
  end
  return table.concat(parts)
end
