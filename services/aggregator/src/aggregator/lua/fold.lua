-- Folds a group of summaries into the live state, each exactly once (see fold.py for the ARGV
-- layout and the same semantics in Python, README.md for the keys). Redis runs a script
-- atomically: a summary's fold and its watermark move together or not at all.
-- Returns one outcome per summary: 1 applied, 0 duplicate, -1 wait (predecessor missing),
-- -2 overlap (breaks the chaining contract).
-- Keys are derived from the prefix inside the script: fine on one Redis node; on Redis Cluster
-- the prefix must be a hash tag such as {smartgrid} so every key lands in one slot.
local P = ARGV[1]
local live_ttl = tonumber(ARGV[2])
local region_ttl = tonumber(ARGV[3])
local late_ttl = tonumber(ARGV[4])
local n = tonumber(ARGV[5])

local wm_key = P .. ':agg:wm'
local dirty_key = P .. ':agg:dirty'
local stats_key = P .. ':agg:stats'
local status_key = P .. ':status'
local meter_status_key = P .. ':meter_status'
local region_meters_key = P .. ':region_meters'
local geo_key = P .. ':geo'
local alerts_key = P .. ':alerts'
local latest = tonumber(redis.call('GET', P .. ':agg:latest') or '0')

-- min/max are stored as the caller's exact strings: tostring() of a Lua number keeps 14 digits.
local function fold_extremes(key, min_field, min_value, max_field, max_value)
  local current = redis.call('HMGET', key, min_field or max_field, max_field)
  if min_field then
    if not current[1] or tonumber(min_value) < tonumber(current[1]) then
      redis.call('HSET', key, min_field, min_value)
    end
    if not current[2] or tonumber(max_value) > tonumber(current[2]) then
      redis.call('HSET', key, max_field, max_value)
    end
  elseif not current[1] or tonumber(max_value) > tonumber(current[1]) then
    redis.call('HSET', key, max_field, max_value)
  end
end

local function alert_indexes(status, region)
  return {
    P .. ':alerts:all',
    P .. ':alerts:s:' .. status,
    P .. ':alerts:r:' .. region,
    P .. ':alerts:sr:' .. string.len(status) .. ':' .. status .. ':' .. region,
  }
end

local function fold_meter(meter, region, status, at_ms, last_ms)
  local held = redis.call('HGET', meter_status_key, meter)
  -- Counts move from the status the aggregator holds; ingest's `previous` is informational.
  if not held then
    redis.call('HINCRBY', region_meters_key, region, 1)
  elseif held ~= status then
    redis.call('HINCRBY', status_key, held, -1)
  end
  if held ~= status then
    redis.call('HINCRBY', status_key, status, 1)
    redis.call('SET', P .. ':agg:dirty_status', '1')
    redis.call('HSET', meter_status_key, meter, status)
  end
  local raw = redis.call('HGET', alerts_key, meter)
  local alert = raw and cjson.decode(raw)
  if alert then
    for _, key in ipairs(alert_indexes(alert.status, alert.region)) do redis.call('ZREM', key, meter) end
  end
  if status == 'ok' then
    if alert then redis.call('HDEL', alerts_key, meter) end
    return
  end
  local since = at_ms
  if alert and alert.status == status then since = alert.since end
  -- Times as strings: cjson writes numbers with 14 significant digits.
  redis.call('HSET', alerts_key, meter,
    cjson.encode({status = status, since = since, last = last_ms, region = region}))
  for _, key in ipairs(alert_indexes(status, region)) do redis.call('ZADD', key, tonumber(since), meter) end
end

local results = {}
local i = 6
for k = 1, n do
  local span = tonumber(ARGV[i])
  local source, first, last = ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local next_i = i + span
  local wm = redis.call('HGET', wm_key, source)
  local outcome
  if not wm or first == tonumber(wm) + 1 then
    outcome = 1
  elseif last <= tonumber(wm) then
    outcome = 0
  elseif first > tonumber(wm) + 1 then
    outcome = -1
  else
    outcome = -2
  end
  results[k] = outcome
  if outcome == 0 then redis.call('HINCRBY', stats_key, 'duplicates', 1) end
  if outcome == -2 then redis.call('HINCRBY', stats_key, 'overlaps', 1) end

  if outcome == 1 then
    redis.call('HSET', wm_key, source, ARGV[i + 3])
    redis.call('HINCRBY', stats_key, 'applied', 1)
    i = i + 4
    -- Seconds: older than the newest minus the retention are gone from the live view.
    local newest = latest
    local ns = tonumber(ARGV[i]); i = i + 1
    for _ = 1, ns do
      local second = tonumber(ARGV[i])
      if second > newest then newest = second end
      if second < latest - live_ttl then
        redis.call('HINCRBY', stats_key, 'too_late_seconds', 1)
      else
        local key = P .. ':sec:' .. ARGV[i]
        redis.call('HINCRBYFLOAT', key, 'sum', ARGV[i + 1])
        redis.call('HINCRBY', key, 'count', ARGV[i + 2])
        fold_extremes(key, 'min', ARGV[i + 3], 'max', ARGV[i + 4])
        redis.call('EXPIRE', key, live_ttl)
        redis.call('SADD', dirty_key, ARGV[i])
      end
      i = i + 5
    end
    local nm = tonumber(ARGV[i]); i = i + 1
    for _ = 1, nm do
      if tonumber(ARGV[i]) >= latest - live_ttl - 60 then
        local key = P .. ':min:' .. ARGV[i]
        redis.call('HINCRBYFLOAT', key, 'sum', ARGV[i + 1])
        redis.call('HINCRBY', key, 'count', ARGV[i + 2])
        fold_extremes(key, 'min', ARGV[i + 3], 'max', ARGV[i + 4])
        redis.call('EXPIRE', key, live_ttl + 120)
      end
      i = i + 5
    end
    local nr = tonumber(ARGV[i]); i = i + 1
    for _ = 1, nr do
      local second, region = ARGV[i], ARGV[i + 1]
      local k_meters = tonumber(ARGV[i + 8])
      if tonumber(second) < latest - region_ttl then
        redis.call('HINCRBY', stats_key, 'too_late_regions', 1)
      else
        local key = P .. ':rsec:' .. second
        redis.call('HINCRBYFLOAT', key, 'sum:' .. region, ARGV[i + 2])
        redis.call('HINCRBY', key, 'cnt:' .. region, ARGV[i + 3])
        fold_extremes(key, nil, nil, 'max:' .. region, ARGV[i + 4])
        if tonumber(ARGV[i + 7]) > 0 then
          redis.call('HINCRBYFLOAT', key, 'lat:' .. region, ARGV[i + 5])
          redis.call('HINCRBYFLOAT', key, 'lon:' .. region, ARGV[i + 6])
          redis.call('HINCRBY', key, 'geo:' .. region, ARGV[i + 7])
          redis.call('HINCRBYFLOAT', geo_key, 'lat:' .. region, ARGV[i + 5])
          redis.call('HINCRBYFLOAT', geo_key, 'lon:' .. region, ARGV[i + 6])
          redis.call('HINCRBY', geo_key, 'n:' .. region, ARGV[i + 7])
        end
        if k_meters > 0 then
          local set_key = P .. ':rmet:' .. second .. ':' .. region
          local chunk = {}
          for j = 1, k_meters do
            chunk[#chunk + 1] = ARGV[i + 8 + j]
            if #chunk == 1000 or j == k_meters then
              redis.call('SADD', set_key, unpack(chunk))
              chunk = {}
            end
          end
          redis.call('EXPIRE', set_key, late_ttl)
          -- After the late window the set is gone: keep the larger count (a lower bound).
          local distinct = redis.call('SCARD', set_key)
          local stored = tonumber(redis.call('HGET', key, 'mc:' .. region) or '0')
          if distinct > stored then redis.call('HSET', key, 'mc:' .. region, distinct) end
        end
        redis.call('EXPIRE', key, region_ttl)
        redis.call('SADD', dirty_key, second)
      end
      i = i + 9 + k_meters
    end
    local nu = tonumber(ARGV[i]); i = i + 1
    for _ = 1, nu do
      fold_meter(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
      i = i + 5
    end
    if newest > latest then
      latest = newest
      redis.call('SET', P .. ':agg:latest', newest)
    end
  end
  i = next_i
end
return results
