-- CUPED's covariate. `unit_history` keeps every unit's running total of the
-- metrics an experiment adjusts with CUPED, exposed or not; when a unit is
-- first exposed to a flag, its history at that moment is copied into
-- `unit_covariates` (its pre-exposure value), in the same transaction that
-- records the exposure, and never changes afterwards.
CREATE TABLE unit_history (
    environment TEXT NOT NULL REFERENCES environments (key),
    metric      TEXT NOT NULL,
    unit        TEXT NOT NULL,
    x           DOUBLE PRECISION NOT NULL,
    y           DOUBLE PRECISION NOT NULL,
    events      BIGINT NOT NULL,
    PRIMARY KEY (environment, metric, unit)
);

CREATE TABLE unit_covariates (
    environment TEXT NOT NULL REFERENCES environments (key),
    flag        TEXT NOT NULL,
    metric      TEXT NOT NULL,
    unit        TEXT NOT NULL,
    x           DOUBLE PRECISION NOT NULL,
    y           DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (environment, flag, metric, unit)
);
