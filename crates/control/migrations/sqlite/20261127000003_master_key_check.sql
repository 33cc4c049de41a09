-- Facts about the state itself, by name. `master_key_check`: a known text sealed under the
-- master key, written the first time a key is used with this state and replaced by a master
-- key rotation in the same transaction. Opening the state checks the key against it, so a
-- wrong or missing key is refused at start, not at the first secret read.
CREATE TABLE state_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
