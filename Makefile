# Smart-grid monitoring pipeline. `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
# uv through scripts/uv: it finds uv where PATH does not (e.g. ~/.local/bin) or installs it.
UV ?= scripts/uv

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## Install Python deps (uv workspace, builds the Rust hot path) and the local stack (InfluxDB 1.8.10 and the InfluxDB Cluster built once)
	scripts/bootstrap
	scripts/stack install
	scripts/stack --influxdb cluster install

stack-up: ## Start Kafka, InfluxDB and Redis on 127.0.0.1 (idempotent)
	scripts/stack up

stack-down: ## Stop the local stack (data stays in .state/)
	scripts/stack down

run: ## Run the whole pipeline locally: stack, ingest, aggregator, writer, dashboard, simulator
	scripts/bootstrap
	$(UV) run --no-sync python scripts/run-local $(ARGS)

unit: ## Unit tests only (no server needed)
	scripts/bootstrap
	$(UV) run --no-sync pytest tests/unit -q

test: ## Every test: unit, integration (real Kafka/InfluxDB/Redis), browser, Kubernetes control plane, the chart on a real node
	scripts/bootstrap
	scripts/stack up
	scripts/stack --influxdb cluster install
	scripts/images
	scripts/k8s install --node
	scripts/k8s up --node
	$(UV) run --no-sync pytest -m "" -q -p no:cacheprovider tests

images: ## Build every image here with podman, no registry (a debootstrap base, the ingest wheel built on the host); cached
	scripts/images $(ARGS)

bench-ingest: ## Ingest benchmark (hot path vs per-message baseline; Kafka->InfluxDB vs InfluxDB capacity)
	$(UV) run --no-sync python bench/bench_ingest.py $(ARGS)

bench-aggregator: ## Aggregator fold-rate benchmark
	$(UV) run --no-sync python bench/bench_aggregator.py $(ARGS)

bench-freshness: ## Produce-to-dashboard freshness at 50k readings/s
	$(UV) run --no-sync python bench/bench_freshness.py $(ARGS)

bench-read-once: ## A worker's reading: one native read (fold + lines) vs the two reads before
	$(UV) run --no-sync python bench/bench_read_once.py $(ARGS)

bench-aggregations: ## Aggregations in one run: fold rate, ingest cost on vs off, freshness at 50k readings/s
	$(UV) run --no-sync python bench/bench_aggregations.py $(ARGS)

bench-dashboard: ## Dashboard under 200 API clients + 50 SSE streams: response times, fold rate with vs without them
	$(UV) run --no-sync python bench/bench_dashboard.py $(ARGS)

bench-capacity: ## CPU per reading of every process at a steady load (ARGS="--rate max" for the highest rate); docs/capacity.md
	$(UV) run --no-sync python bench/bench_capacity.py $(ARGS)

bench-idle: ## CPU and wake-ups per second of each service's threads with no traffic (the fixed cost behind CPU per reading at low rates)
	$(UV) run --no-sync python bench/bench_idle.py $(ARGS)

bench-fetch: ## The live reader's CPU (and the Kafka broker's) per reading for each fetch setting (or each build: ARGS="--builds A.so B.so"), same live load, one run
	$(UV) run --no-sync python bench/bench_fetch.py $(ARGS)

bench-peers: ## The same records through this product, Telegraf and Quix Streams into InfluxDB (builds the peers once)
	$(UV) run --no-sync python bench/bench_peers.py $(ARGS)

bench-influx-shapes: ## influxd's CPU per point for one point per series per write (every write at scale) vs several (a catch-up), same points, one run
	$(UV) run --no-sync python bench/bench_influx_shapes.py $(ARGS)

bench-influx-cluster: ## InfluxDB single node vs a 2-data-node InfluxDB Cluster, replication 1 and 2: throughput and influxd CPU per point (docs/scaling.md)
	$(UV) run --no-sync python bench/bench_influx_cluster.py $(ARGS)

.PHONY: help install stack-up stack-down run unit test images bench-ingest bench-aggregator bench-freshness bench-read-once bench-aggregations bench-capacity bench-idle bench-fetch bench-peers bench-dashboard bench-influx-shapes bench-influx-cluster
