-- Emits the buckets marked dirty by fold.lua (and the status counts, if they changed) as ONE
-- rollup message, and clears those marks, atomically: a crash can neither lose a change nor
-- leave a mark for something already emitted. The JSON is built by hand from Redis' own decimal
-- strings so no precision is lost (cjson prints 14 digits); it matches contracts.Rollup.
-- ARGV[1]: the call, records.EmitCall (records.py declares its fields, read here by name).
-- Returns {seq, dirty seconds left} or {-1, 0} when another replica emitted this interval.
local args = record(ARGV[1], 'emit_call')
local P = args.prefix
local lock_key = P .. ':agg:emit_lock'
-- One emission round per interval over all replicas: "at most once per bucket per interval".
if not redis.call('SET', lock_key, args.owner, 'NX', 'PX', args.lock_ms) then
  if redis.call('GET', lock_key) ~= args.owner then return {-1, 0} end
end
local dirty_key = P .. ':agg:dirty'
local seconds = redis.call('SPOP', dirty_key, args.max_seconds)
local status_dirty = redis.call('GETDEL', P .. ':agg:dirty_status')
if #seconds == 0 and not status_dirty then return {0, 0} end
local seq = redis.call('INCR', P .. ':agg:seq')
table.sort(seconds, function(a, b) return tonumber(a) < tonumber(b) end)

local second_rows, region_rows = {}, {}
for _, second in ipairs(seconds) do
  local sec_key = P .. ':sec:' .. second
  local totals = redis.call('HMGET', sec_key, 'sum', 'count', 'min', 'max')
  if totals[1] then
    second_rows[#second_rows + 1] = '[' .. second .. ',' .. totals[1] .. ',' .. totals[2] .. ','
      .. totals[3] .. ',' .. totals[4] .. ']'
    redis.call('HSET', sec_key, 'emit_seq', seq)
  end
  local rsec_key = P .. ':rsec:' .. second
  local flat = redis.call('HGETALL', rsec_key)
  if #flat > 0 then
    local regions, order = {}, {}
    for j = 1, #flat, 2 do
      local colon = string.find(flat[j], ':', 1, true)
      if colon then
        local kind, region = string.sub(flat[j], 1, colon - 1), string.sub(flat[j], colon + 1)
        if not regions[region] then regions[region] = {}; order[#order + 1] = region end
        regions[region][kind] = flat[j + 1]
      end
    end
    table.sort(order)
    for _, region in ipairs(order) do
      local r = regions[region]
      if r.sum then
        region_rows[#region_rows + 1] = '[' .. second .. ',' .. cjson.encode(region) .. ',' .. r.sum
          .. ',' .. r.cnt .. ',' .. (r.mc or '0') .. ',' .. r.max .. ']'
      end
    end
    redis.call('HSET', rsec_key, 'emit_seq', seq)
  end
end

local status_json, status_second = 'null', 'null'
if status_dirty then
  local flat = redis.call('HGETALL', P .. ':status')
  local parts = {}
  for j = 1, #flat, 2 do parts[#parts + 1] = cjson.encode(flat[j]) .. ':' .. flat[j + 1] end
  status_json = '{' .. table.concat(parts, ',') .. '}'
  status_second = redis.call('GET', P .. ':agg:latest') or 'null'
  -- "<seq> <second>": a writer skips an older status rollup only for the same second.
  redis.call('SET', P .. ':agg:status_seq', seq .. ' ' .. status_second)
end

-- "v": the contract version (smartgrid_common.contracts.ROLLUP_VERSION).
local data = '{"v":1,"seq":' .. seq .. ',"emitted_ms":' .. string.format('%d', args.emitted_ms) .. ',"seconds":[' .. table.concat(second_rows, ',')
  .. '],"regions":[' .. table.concat(region_rows, ',') .. '],"status_second":' .. status_second
  .. ',"status":' .. status_json .. '}'
redis.call('XADD', args.stream, 'MAXLEN', '~', args.max_entries, '*', 'data', data)
return {seq, redis.call('SCARD', dirty_key)}
