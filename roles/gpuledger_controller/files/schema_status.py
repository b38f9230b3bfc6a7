# Prints {"<package>": [current revision, head revision], ...} for every migration chain `gpuledger db upgrade`
# runs, so the role migrates only when a chain is behind (and reports a change only then).
import json
import os
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from gpuledger.main import migration_chains
from ledger.migrate import current

url = Path(os.environ["GPULEDGER_ADMIN_DATABASE_URL_FILE"]).read_text().strip()
status = {}
for package, migrations, version_table in migration_chains():
    config = Config()
    config.set_main_option("script_location", str(migrations))
    status[package] = [current(url, version_table), ScriptDirectory.from_config(config).get_current_head()]
print(json.dumps(status))
