-- Schema of the durable record. Idempotent: every statement can run again on an
-- existing database. Valid on MySQL 8.x and MariaDB 10.11.
-- Applied by `python -m ml_api.cli init-db` and by the MySQL container at first start.

CREATE TABLE IF NOT EXISTS experiments (
    id                 INT UNSIGNED NOT NULL AUTO_INCREMENT,
    name               VARCHAR(64)  NOT NULL,
    status             ENUM('draft', 'running', 'paused', 'stopped') NOT NULL DEFAULT 'draft',
    salt               VARCHAR(64)  NOT NULL,
    traffic_allocation DECIMAL(5, 4) NOT NULL DEFAULT 1.0000,
    default_variant    VARCHAR(64)  NOT NULL,
    -- Guardrail thresholds as a JSON object, e.g. {"max_fallback_rate": 0.05}.
    guardrails         TEXT         NULL,
    -- Bumped on every change, so workers notice a new definition with one cheap query.
    version            INT UNSIGNED NOT NULL DEFAULT 1,
    created_at         TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at         TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    started_at         TIMESTAMP(3) NULL DEFAULT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_experiments_name (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS variants (
    experiment_id INT UNSIGNED NOT NULL,
    name          VARCHAR(64)  NOT NULL,
    position      SMALLINT UNSIGNED NOT NULL,
    weight        DECIMAL(9, 4) NOT NULL,
    model_name    VARCHAR(64)  NOT NULL,
    PRIMARY KEY (experiment_id, name),
    CONSTRAINT fk_variants_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Append-only: the application only ever INSERTs here.
CREATE TABLE IF NOT EXISTS experiment_changes (
    id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    experiment_id INT UNSIGNED NOT NULL,
    changed_at    TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    actor         VARCHAR(128) NOT NULL,
    action        VARCHAR(32)  NOT NULL,
    before_state  TEXT NULL,
    after_state   TEXT NULL,
    PRIMARY KEY (id),
    KEY ix_changes_experiment (experiment_id, id),
    CONSTRAINT fk_changes_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Forced variants for named users (QA). Such users are not exposures.
CREATE TABLE IF NOT EXISTS overrides (
    experiment_id INT UNSIGNED NOT NULL,
    user_id       VARCHAR(128) NOT NULL,
    variant       VARCHAR(64)  NOT NULL,
    created_at    TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (experiment_id, user_id),
    CONSTRAINT fk_overrides_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The first exposure of each user in each experiment; the primary key makes the first
-- writer win on every host.
CREATE TABLE IF NOT EXISTS assignments (
    experiment_id INT UNSIGNED NOT NULL,
    user_id       VARCHAR(128) NOT NULL,
    variant       VARCHAR(64)  NOT NULL,
    assigned_at   TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (experiment_id, user_id),
    KEY ix_assignments_variant (experiment_id, variant, assigned_at),
    CONSTRAINT fk_assignments_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Outcomes posted through /feedback. feedback_id makes a replayed write a no-op.
CREATE TABLE IF NOT EXISTS outcomes (
    id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    feedback_id   CHAR(32)     NOT NULL,
    experiment_id INT UNSIGNED NOT NULL,
    user_id       VARCHAR(128) NOT NULL,
    variant       VARCHAR(64)  NOT NULL,
    request_id    CHAR(32)     NULL,
    value         DOUBLE       NOT NULL,
    recorded_at   TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    -- The named metric the value is for (POST /feedback {"metric"}; ml_api/experiments/metrics.py).
    metric        VARCHAR(64)  NOT NULL DEFAULT 'outcome',
    PRIMARY KEY (id),
    UNIQUE KEY uq_outcomes_feedback (feedback_id),
    KEY ix_outcomes_user (experiment_id, variant, user_id),
    CONSTRAINT fk_outcomes_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Summary rows for the results, so that reading them is a GROUP BY over a few thousand
-- rows rather than over every exposure. Triggers write them in the same transaction as
-- the rows they summarise, so every writer (the gateway, the spool replay, a bulk load)
-- keeps them exact.

-- New exposures per experiment, variant and hour (Unix time DIV 3600). The counter is
-- split into 16 shards (CRC32 of the user id), so concurrent first exposures do not all
-- wait for one row lock.
CREATE TABLE IF NOT EXISTS exposure_counts (
    experiment_id INT UNSIGNED NOT NULL,
    variant       VARCHAR(64)  NOT NULL,
    hour          INT UNSIGNED NOT NULL,
    shard         TINYINT UNSIGNED NOT NULL,
    users         INT UNSIGNED NOT NULL,
    PRIMARY KEY (experiment_id, variant, hour, shard),
    CONSTRAINT fk_exposure_counts_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Once, for a database that had exposures before this table existed (a no-op as soon as
-- it has rows). Before the trigger: a trigger firing first would make the table non-empty.
INSERT INTO exposure_counts (experiment_id, variant, hour, shard, users)
    SELECT experiment_id, variant, UNIX_TIMESTAMP(assigned_at) DIV 3600, CRC32(user_id) % 16, COUNT(*)
    FROM assignments WHERE NOT EXISTS (SELECT 1 FROM exposure_counts)
    GROUP BY experiment_id, variant, UNIX_TIMESTAMP(assigned_at) DIV 3600, CRC32(user_id) % 16;

-- Fires only for a real first exposure: a repeated one is a no-op update, not an insert.
CREATE TRIGGER IF NOT EXISTS assignments_count_exposure AFTER INSERT ON assignments FOR EACH ROW
    INSERT INTO exposure_counts (experiment_id, variant, hour, shard, users)
    VALUES (NEW.experiment_id, NEW.variant, UNIX_TIMESTAMP(NEW.assigned_at) DIV 3600, CRC32(NEW.user_id) % 16, 1)
    ON DUPLICATE KEY UPDATE users = users + 1;

-- Upgrade: a database whose outcomes predate named metrics gets the column (every old
-- outcome is the default metric). Plain SQL on MySQL 8 and MariaDB: the ALTER runs only
-- when information_schema says the column is missing.
SET @add_outcome_metric = IF((SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE()
    AND table_name = 'outcomes' AND column_name = 'metric') = 0,
    'ALTER TABLE outcomes ADD COLUMN metric VARCHAR(64) NOT NULL DEFAULT ''outcome''', 'DO 0');
PREPARE add_outcome_metric FROM @add_outcome_metric;
EXECUTE add_outcome_metric;
DEALLOCATE PREPARE add_outcome_metric;

-- Per user and metric with outcomes: how many, their sum, and when the first positive one
-- was recorded (the moment the user converted on that metric; NULL if none was positive).
-- Users without outcomes have no row (they count as 0), so the table grows with the users
-- who sent feedback, not with the exposures. ix_metric_users_total serves the capping
-- quantile (the k-th largest per-user sum) as an index walk.
CREATE TABLE IF NOT EXISTS metric_users (
    experiment_id INT UNSIGNED NOT NULL,
    metric        VARCHAR(64)  NOT NULL,
    variant       VARCHAR(64)  NOT NULL,
    user_id       VARCHAR(128) NOT NULL,
    outcomes      INT UNSIGNED NOT NULL,
    total         DOUBLE       NOT NULL,
    converted_at  TIMESTAMP(3) NULL DEFAULT NULL,
    PRIMARY KEY (experiment_id, metric, variant, user_id),
    KEY ix_metric_users_total (experiment_id, metric, total),
    CONSTRAINT fk_metric_users_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Upgrade from the single-outcome summary (outcome_users, one row per user): its trigger
-- goes first, so no outcome is summed twice; then the per-metric rows are built once from
-- the raw outcomes (a no-op as soon as metric_users has rows) before the new trigger.
DROP TRIGGER IF EXISTS outcomes_sum_per_user;
DROP TABLE IF EXISTS outcome_users;
INSERT INTO metric_users (experiment_id, metric, variant, user_id, outcomes, total, converted_at)
    SELECT experiment_id, metric, variant, user_id, COUNT(*), SUM(value), MIN(IF(value > 0, recorded_at, NULL))
    FROM outcomes WHERE NOT EXISTS (SELECT 1 FROM metric_users)
    GROUP BY experiment_id, metric, variant, user_id;

-- A replayed outcome (same feedback_id) is a no-op update and is not counted twice.
CREATE TRIGGER IF NOT EXISTS outcomes_sum_per_metric_user AFTER INSERT ON outcomes FOR EACH ROW
    INSERT INTO metric_users (experiment_id, metric, variant, user_id, outcomes, total, converted_at)
    VALUES (NEW.experiment_id, NEW.metric, NEW.variant, NEW.user_id, 1, NEW.value,
            IF(NEW.value > 0, NEW.recorded_at, NULL))
    ON DUPLICATE KEY UPDATE outcomes = outcomes + 1, total = total + VALUES(total),
        converted_at = COALESCE(LEAST(converted_at, VALUES(converted_at)), converted_at, VALUES(converted_at));

-- CUPED covariates (POST /covariates): one pre-experiment value per user, experiment and
-- covariate name, accepted only while the user has no exposure in the experiment (a value
-- seen after the treatment could carry its effect). Exposed users without one count as 0.
-- variant: NULL until the user's first exposure, then set by the trigger below, so the
-- results sum the covariate per variant without joining the exposures.
CREATE TABLE IF NOT EXISTS metric_covariates (
    experiment_id INT UNSIGNED NOT NULL,
    covariate     VARCHAR(64)  NOT NULL,
    user_id       VARCHAR(128) NOT NULL,
    value         DOUBLE       NOT NULL,
    recorded_at   TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    variant       VARCHAR(64)  NULL DEFAULT NULL,
    PRIMARY KEY (experiment_id, covariate, user_id),
    KEY ix_metric_covariates_user (experiment_id, user_id),
    CONSTRAINT fk_metric_covariates_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- A first exposure marks the user's covariate values with the variant (one index probe,
-- which finds nothing for the users without covariates).
CREATE TRIGGER IF NOT EXISTS assignments_mark_covariates AFTER INSERT ON assignments FOR EACH ROW
    UPDATE metric_covariates SET variant = NEW.variant
    WHERE experiment_id = NEW.experiment_id AND user_id = NEW.user_id;

-- The metrics an experiment declares (ml_api/experiments/metrics.py) as JSON: primary,
-- secondary and guardrail metrics. No row: the default metric `outcome`.
CREATE TABLE IF NOT EXISTS experiment_metrics (
    experiment_id INT UNSIGNED NOT NULL,
    declaration   TEXT         NOT NULL,
    PRIMARY KEY (experiment_id),
    CONSTRAINT fk_experiment_metrics_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Requests per experiment, variant and minute (Unix time DIV 60), the data behind the
-- guardrails, one row per latency bucket: bucket 0 holds latencies up to 0.25 ms,
-- bucket k (1..64) those in (0.25 * 2^((k-1)/4), 0.25 * 2^(k/4)] ms, bucket 65 all above
-- 16.4 s, so a percentile over any rows comes from their summed bucket counts. Every
-- worker adds its counts every second (ml_api/telemetry/request_stats.py).
CREATE TABLE IF NOT EXISTS request_stats (
    experiment_id  INT UNSIGNED NOT NULL,
    variant        VARCHAR(64)  NOT NULL,
    minute         INT UNSIGNED NOT NULL,
    latency_bucket TINYINT UNSIGNED NOT NULL,
    requests       INT UNSIGNED NOT NULL,
    errors         INT UNSIGNED NOT NULL,
    fallbacks      INT UNSIGNED NOT NULL,
    PRIMARY KEY (experiment_id, variant, minute, latency_bucket),
    CONSTRAINT fk_request_stats_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The same counts over the whole experiment, written in the same transaction as the
-- per-minute rows; the results read these.
CREATE TABLE IF NOT EXISTS request_totals (
    experiment_id  INT UNSIGNED NOT NULL,
    variant        VARCHAR(64)  NOT NULL,
    latency_bucket TINYINT UNSIGNED NOT NULL,
    requests       BIGINT UNSIGNED NOT NULL,
    errors         BIGINT UNSIGNED NOT NULL,
    fallbacks      BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (experiment_id, variant, latency_bucket),
    CONSTRAINT fk_request_totals_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Safe rollout of an experiment (ml_api/rollout/): a shadow model mirrored on a share
-- of requests, a canary ramp of the traffic allocation, and the guardrail pause. Changed
-- only inside the experiment-change transaction (version bump + history row).
CREATE TABLE IF NOT EXISTS experiment_rollouts (
    experiment_id        INT UNSIGNED NOT NULL,
    shadow_model         VARCHAR(64)  NULL,
    -- Share of users (0..100 %) whose requests the shadow model also answers.
    shadow_percent       DECIMAL(7, 4) NOT NULL DEFAULT 0,
    -- Ramp steps as a JSON list of {"allocation", "min_seconds"}; NULL: no ramp.
    ramp                 TEXT         NULL,
    ramp_step            SMALLINT UNSIGNED NULL,
    step_started_at      TIMESTAMP(3) NULL DEFAULT NULL,
    -- The breach that paused the experiment (JSON: guardrail, variant, observed, threshold);
    -- NULL when not paused by a guardrail. Cleared when the experiment is started again.
    guardrail_breach     TEXT         NULL,
    -- Guardrails count requests from this minute (Unix time DIV 60) on: those before the
    -- last guardrail pause do not pause the experiment again after a resume.
    guardrail_from_minute INT UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id),
    CONSTRAINT fk_rollouts_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The request counts of the minute an experiment was (re)started, as they stood at that
-- moment: rows of request_stats, copied. The guardrails subtract them, so after a resume
-- they judge the requests served since the resume, not from the next minute on. Replaced
-- at every start.
CREATE TABLE IF NOT EXISTS guardrail_baselines LIKE request_stats;

-- One row per mirrored request: what was served and what the shadow model said (NULL
-- label: the shadow model failed, see shadow_error). Written in batches off the request path.
CREATE TABLE IF NOT EXISTS shadow_predictions (
    request_id    CHAR(32)     NOT NULL,
    experiment_id INT UNSIGNED NOT NULL,
    user_id       VARCHAR(128) NOT NULL,
    variant       VARCHAR(64)  NOT NULL,
    served_model  VARCHAR(64)  NOT NULL,
    served_label  VARCHAR(255) NOT NULL,
    shadow_model  VARCHAR(64)  NOT NULL,
    shadow_label  VARCHAR(255) NULL,
    shadow_error  VARCHAR(255) NULL,
    shadow_ms     DOUBLE       NULL,
    created_at    TIMESTAMP(3) NOT NULL,
    PRIMARY KEY (request_id),
    KEY ix_shadow_experiment (experiment_id, shadow_model),
    CONSTRAINT fk_shadow_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The true label posted with an outcome (POST /feedback {"label"}), for the accuracy of
-- served and shadow predictions; the latest label of a request counts.
CREATE TABLE IF NOT EXISTS feedback_labels (
    feedback_id   CHAR(32)     NOT NULL,
    experiment_id INT UNSIGNED NOT NULL,
    request_id    CHAR(32)     NULL,
    label         VARCHAR(255) NOT NULL,
    recorded_at   TIMESTAMP(3) NOT NULL,
    PRIMARY KEY (feedback_id),
    KEY ix_feedback_labels_request (request_id, recorded_at),
    CONSTRAINT fk_feedback_labels_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The statistical plan of an experiment (ml_api/experiments/plans.py): the baseline rate and
-- relative MDE it is planned for, the mSPRT's mixing variance tau2 = (baseline_rate * mde)^2
-- derived from them, and whether a variation with a final `stop` verdict loses its traffic
-- automatically. tau2 is fixed when the experiment first starts (fixed_at), so it cannot
-- change mid-experiment; only stop_variations can change after that.
CREATE TABLE IF NOT EXISTS experiment_plans (
    experiment_id   INT UNSIGNED NOT NULL,
    baseline_rate   DOUBLE       NOT NULL,
    mde             DOUBLE       NOT NULL,
    tau2            DOUBLE       NOT NULL,
    alpha           DOUBLE       NOT NULL,
    stop_variations TINYINT(1)   NOT NULL DEFAULT 0,
    fixed_at        TIMESTAMP(3) NULL DEFAULT NULL,
    PRIMARY KEY (experiment_id),
    CONSTRAINT fk_plans_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Upgrade: an experiment started before plans existed keeps the tau2 it has been judged
-- with (the former constant 1e-4 = (10 % * 10 %)^2). A no-op for every experiment that has a plan.
INSERT INTO experiment_plans (experiment_id, baseline_rate, mde, tau2, alpha, fixed_at)
    SELECT id, 0.1, 0.1, 0.0001, 0.05, started_at FROM experiments WHERE started_at IS NOT NULL
    ON DUPLICATE KEY UPDATE experiment_id = experiment_plans.experiment_id;

-- Final verdicts (ml_api/experiments/verdicts.py): one row per variation that got a verdict
-- other than keep_running, and one for the experiment's action (subject ''). Written once,
-- in the experiment-change transaction (history action `verdict`), never updated: later
-- data is shown but cannot flip a verdict. look_at is the end of the look (timeline bucket)
-- that gave it; evidence holds that look's numbers (JSON).
CREATE TABLE IF NOT EXISTS experiment_verdicts (
    experiment_id INT UNSIGNED NOT NULL,
    subject       VARCHAR(64)  NOT NULL,
    verdict       VARCHAR(32)  NOT NULL,
    variant       VARCHAR(64)  NULL,
    reason        TEXT         NOT NULL,
    evidence      TEXT         NOT NULL,
    look_at       TIMESTAMP(3) NOT NULL,
    recorded_at   TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (experiment_id, subject),
    CONSTRAINT fk_verdicts_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
