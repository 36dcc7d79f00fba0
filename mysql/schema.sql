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
-- who sent feedback, not with the exposures.
-- The folded_* columns are what the results' summary tables (below) have counted of the
-- row: its total and conversion as of the last fold (ml_api/results/fold.py), NULL if it
-- was never counted. dirty = 1: the row changed since (a new row, or a trigger below);
-- ix_metric_users_dirty lets the folder find those rows without scanning the others.
-- ix_metric_users_folded serves the capping quantile (the k-th largest counted per-user
-- sum) and the users above a cap as index walks.
CREATE TABLE IF NOT EXISTS metric_users (
    experiment_id       INT UNSIGNED NOT NULL,
    metric              VARCHAR(64)  NOT NULL,
    variant             VARCHAR(64)  NOT NULL,
    user_id             VARCHAR(128) NOT NULL,
    outcomes            INT UNSIGNED NOT NULL,
    total               DOUBLE       NOT NULL,
    converted_at        TIMESTAMP(3) NULL DEFAULT NULL,
    folded_total        DOUBLE       NULL DEFAULT NULL,
    folded_converted_at TIMESTAMP(3) NULL DEFAULT NULL,
    dirty               TINYINT      NOT NULL DEFAULT 1,
    PRIMARY KEY (experiment_id, metric, variant, user_id),
    KEY ix_metric_users_dirty (experiment_id, dirty),
    KEY ix_metric_users_folded (experiment_id, metric, folded_total),
    CONSTRAINT fk_metric_users_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Upgrade: per-user rows from before the folds get the columns, every row dirty (nothing
-- counted yet), and the index on the counted total replaces the one on the live total.
SET @fold_metric_users = IF((SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE()
    AND table_name = 'metric_users' AND column_name = 'dirty') = 0,
    'ALTER TABLE metric_users ADD COLUMN folded_total DOUBLE NULL DEFAULT NULL,
        ADD COLUMN folded_converted_at TIMESTAMP(3) NULL DEFAULT NULL, ADD COLUMN dirty TINYINT NOT NULL DEFAULT 1,
        ADD KEY ix_metric_users_dirty (experiment_id, dirty),
        ADD KEY ix_metric_users_folded (experiment_id, metric, folded_total), DROP KEY ix_metric_users_total',
    'DO 0');
PREPARE fold_metric_users FROM @fold_metric_users;
EXECUTE fold_metric_users;
DEALLOCATE PREPARE fold_metric_users;

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

-- A change of what the results count marks the row for the next fold; the folder's own
-- update (folded_* and dirty only) leaves it clean. A BEFORE UPDATE trigger of the row
-- itself rather than a change to the trigger above: an existing trigger cannot be replaced
-- without a moment when outcomes go unsummed (no CREATE OR REPLACE TRIGGER on MySQL 8).
CREATE TRIGGER IF NOT EXISTS metric_users_mark_dirty BEFORE UPDATE ON metric_users FOR EACH ROW
    SET NEW.dirty = NEW.dirty OR NOT (NEW.total <=> OLD.total AND NEW.converted_at <=> OLD.converted_at);

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
    -- As in metric_users: the value and variant the summaries counted (NULL value: none), and
    -- whether the row changed since.
    folded_value   DOUBLE      NULL DEFAULT NULL,
    folded_variant VARCHAR(64) NULL DEFAULT NULL,
    dirty          TINYINT     NOT NULL DEFAULT 1,
    PRIMARY KEY (experiment_id, covariate, user_id),
    KEY ix_metric_covariates_user (experiment_id, user_id),
    KEY ix_metric_covariates_dirty (experiment_id, dirty),
    CONSTRAINT fk_metric_covariates_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

SET @fold_metric_covariates = IF((SELECT COUNT(*) FROM information_schema.columns
    WHERE table_schema = DATABASE() AND table_name = 'metric_covariates' AND column_name = 'dirty') = 0,
    'ALTER TABLE metric_covariates ADD COLUMN folded_value DOUBLE NULL DEFAULT NULL,
        ADD COLUMN folded_variant VARCHAR(64) NULL DEFAULT NULL, ADD COLUMN dirty TINYINT NOT NULL DEFAULT 1,
        ADD KEY ix_metric_covariates_dirty (experiment_id, dirty)',
    'DO 0');
PREPARE fold_metric_covariates FROM @fold_metric_covariates;
EXECUTE fold_metric_covariates;
DEALLOCATE PREPARE fold_metric_covariates;

-- A new value (POST /covariates before the exposure) or the variant set at the exposure.
CREATE TRIGGER IF NOT EXISTS metric_covariates_mark_dirty BEFORE UPDATE ON metric_covariates FOR EACH ROW
    SET NEW.dirty = NEW.dirty OR NOT (NEW.value <=> OLD.value AND NEW.variant <=> OLD.variant);

-- A first exposure marks the user's covariate values with the variant (one index probe,
-- which finds nothing for the users without covariates).
CREATE TRIGGER IF NOT EXISTS assignments_mark_covariates AFTER INSERT ON assignments FOR EACH ROW
    UPDATE metric_covariates SET variant = NEW.variant
    WHERE experiment_id = NEW.experiment_id AND user_id = NEW.user_id;

-- The results' sums over the counted (folded_*) columns of metric_users and
-- metric_covariates, per variant, so a results read needs no scan of every user with
-- outcomes. Only the folder (ml_api/results/fold.py) writes them, one experiment at a
-- time, in the same transaction as the folded_* columns it sets: the outcome path never
-- touches them. Counts and sums go up and down as users' rows change (new - old).

-- Upgrade from a database that ran the trigger-kept, sharded sums of an earlier version:
-- their triggers go (they would lock these rows in every outcome's transaction), and the
-- tables with them, rebuilt below unsharded and filled by the first fold.
DROP TRIGGER IF EXISTS metric_users_add_totals;
DROP TRIGGER IF EXISTS metric_users_change_totals;
DROP TRIGGER IF EXISTS metric_users_add_conversion;
DROP TRIGGER IF EXISTS metric_users_unmove_conversion;
DROP TRIGGER IF EXISTS metric_users_move_conversion;
DROP TRIGGER IF EXISTS metric_users_add_pairs;
DROP TRIGGER IF EXISTS metric_users_change_pairs;
DROP TRIGGER IF EXISTS metric_users_add_covariate_cross;
DROP TRIGGER IF EXISTS metric_users_change_covariate_cross;
DROP TRIGGER IF EXISTS metric_covariates_add_cross;
DROP TRIGGER IF EXISTS metric_covariates_change_cross;
DROP TRIGGER IF EXISTS metric_covariates_add_totals;
DROP TRIGGER IF EXISTS metric_covariates_change_totals;
DROP TRIGGER IF EXISTS metric_covariates_remove_totals;
SET @drop_sharded_sums = IF((SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE()
    AND table_name = 'metric_totals' AND column_name = 'shard') = 0, 'DO 0',
    'DROP TABLE IF EXISTS metric_totals, metric_conversions, metric_pair_totals, metric_covariate_totals,
        metric_covariate_cross');
PREPARE drop_sharded_sums FROM @drop_sharded_sums;
EXECUTE drop_sharded_sums;
DEALLOCATE PREPARE drop_sharded_sums;

-- Per feedback metric: users with outcomes, how many have a positive or a negative total,
-- Σ and Σ² of the per-user totals (a conversion's, an uncapped mean's, a ratio's own sums).
CREATE TABLE IF NOT EXISTS metric_totals (
    experiment_id    INT UNSIGNED NOT NULL,
    metric           VARCHAR(64)  NOT NULL,
    variant          VARCHAR(64)  NOT NULL,
    users            BIGINT       NOT NULL,
    positive         BIGINT       NOT NULL,
    negative         BIGINT       NOT NULL,
    total            DOUBLE       NOT NULL,
    total_of_squares DOUBLE       NOT NULL,
    PRIMARY KEY (experiment_id, metric, variant),
    CONSTRAINT fk_metric_totals_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Users who converted per feedback metric, variant and hour of converted_at (Unix time
-- DIV 3600): the conversion timeline. An earlier positive outcome (a spool replay) moves a
-- user to an earlier hour, so a count can fall to 0; such rows are not read.
CREATE TABLE IF NOT EXISTS metric_conversions (
    experiment_id INT UNSIGNED NOT NULL,
    metric        VARCHAR(64)  NOT NULL,
    variant       VARCHAR(64)  NOT NULL,
    hour          INT UNSIGNED NOT NULL,
    users         BIGINT       NOT NULL,
    PRIMARY KEY (experiment_id, metric, variant, hour),
    CONSTRAINT fk_metric_conversions_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- A ratio's Σxy: per pair of feedback metrics (metric_a < metric_b), Σ total_a * total_b
-- over the users with both in the same variant.
CREATE TABLE IF NOT EXISTS metric_pair_totals (
    experiment_id INT UNSIGNED NOT NULL,
    metric_a      VARCHAR(64)  NOT NULL,
    metric_b      VARCHAR(64)  NOT NULL,
    variant       VARCHAR(64)  NOT NULL,
    total         DOUBLE       NOT NULL,
    PRIMARY KEY (experiment_id, metric_a, metric_b, variant),
    CONSTRAINT fk_metric_pair_totals_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- A covariate's users, Σx and Σx² over the exposed users with a value (those with a variant).
CREATE TABLE IF NOT EXISTS metric_covariate_totals (
    experiment_id    INT UNSIGNED NOT NULL,
    covariate        VARCHAR(64)  NOT NULL,
    variant          VARCHAR(64)  NOT NULL,
    users            BIGINT       NOT NULL,
    total            DOUBLE       NOT NULL,
    total_of_squares DOUBLE       NOT NULL,
    PRIMARY KEY (experiment_id, covariate, variant),
    CONSTRAINT fk_metric_covariate_totals_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Per feedback metric and covariate, over the users with both (variant: the metric row's):
-- users, Σx, Σx·total and Σx·(total > 0), the CUPED cross sums.
CREATE TABLE IF NOT EXISTS metric_covariate_cross (
    experiment_id   INT UNSIGNED NOT NULL,
    metric          VARCHAR(64)  NOT NULL,
    covariate       VARCHAR(64)  NOT NULL,
    variant         VARCHAR(64)  NOT NULL,
    users           BIGINT       NOT NULL,
    covariate_total DOUBLE       NOT NULL,
    cross_total     DOUBLE       NOT NULL,
    cross_positive  DOUBLE       NOT NULL,
    PRIMARY KEY (experiment_id, metric, covariate, variant),
    CONSTRAINT fk_metric_covariate_cross_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Per user with both: their counted total on a feedback metric (variant: the metric row's)
-- and their counted covariate value. A capped metric with CUPED takes Σ x·(total - cap) over
-- the users above the cap off its cross sums: a range of ix_metric_covariate_users_total,
-- rather than a look-up of each such user's covariate value.
CREATE TABLE IF NOT EXISTS metric_covariate_users (
    experiment_id INT UNSIGNED NOT NULL,
    metric        VARCHAR(64)  NOT NULL,
    covariate     VARCHAR(64)  NOT NULL,
    variant       VARCHAR(64)  NOT NULL,
    user_id       VARCHAR(128) NOT NULL,
    total         DOUBLE       NOT NULL,
    value         DOUBLE       NOT NULL,
    PRIMARY KEY (experiment_id, metric, covariate, variant, user_id),
    KEY ix_metric_covariate_users_total (experiment_id, metric, covariate, total, value),
    CONSTRAINT fk_metric_covariate_users_experiment FOREIGN KEY (experiment_id) REFERENCES experiments (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

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
