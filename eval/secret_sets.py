"""Secret sets for the evaluation: vendor token formats in many contexts, random
passwords, wrapped and split secrets, and hard negatives (public look-alikes).

Every generator is seeded, so a run is reproducible. The formats come from the
vendors' documentation of their token shapes, not from the guard's rules: the point
is to measure the rules, not to restate them.
"""

import base64
import pathlib
import re
import string
import tarfile
import urllib.parse

ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"
BASE32 = string.ascii_uppercase + "234567"
BECH32 = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"


def pick(rng, alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def uuid4(rng):
    h = pick(rng, HEX, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{rng.choice('89ab')}{h[17:20]}-{h[20:]}"


def jwt(rng):
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
    claims = '{"sub":"%d","name":"%s","iat":%d}' % (rng.randrange(10**9), pick(rng, string.ascii_lowercase, 8), 1700000000 + rng.randrange(10**7))
    body = base64.urlsafe_b64encode(claims.encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{pick(rng, URLSAFE, 43)}"


def pem(rng):
    body = "\n".join(pick(rng, B64, 64) for _ in range(6))
    kind = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


# (format, keyword a developer would put next to it, generator). The keyword names the
# variable in the contexts below; for keyless formats it is a generic one.
FORMATS = [
    ("aws-access-key-id", "AWS_ACCESS_KEY_ID", lambda r: "AKIA" + pick(r, BASE32, 16)),
    ("aws-secret-access-key", "AWS_SECRET_ACCESS_KEY", lambda r: pick(r, B64, 40)),
    ("github-classic-pat", "GITHUB_TOKEN", lambda r: "ghp_" + pick(r, ALNUM, 36)),
    ("github-oauth", "GH_OAUTH_TOKEN", lambda r: "gho_" + pick(r, ALNUM, 36)),
    ("github-app-token", "GITHUB_APP_TOKEN", lambda r: "ghs_" + pick(r, ALNUM, 36)),
    ("github-refresh-token", "GH_REFRESH", lambda r: "ghr_" + pick(r, ALNUM, 36)),
    ("github-fine-grained", "GITHUB_PAT", lambda r: "github_pat_" + pick(r, ALNUM, 22) + "_" + pick(r, ALNUM, 59)),
    ("gitlab-pat", "GITLAB_TOKEN", lambda r: "glpat-" + pick(r, URLSAFE, 20)),
    ("gitlab-pipeline-trigger", "CI_TRIGGER", lambda r: "glptt-" + pick(r, HEX, 40)),
    ("gitlab-runner-token", "RUNNER_TOKEN", lambda r: "glrt-" + pick(r, URLSAFE, 20)),
    ("gitlab-deploy-token", "DEPLOY_TOKEN", lambda r: "gldt-" + pick(r, URLSAFE, 20)),
    ("slack-bot-token", "SLACK_BOT_TOKEN", lambda r: f"xoxb-{pick(r, string.digits, 11)}-{pick(r, string.digits, 13)}-{pick(r, ALNUM, 24)}"),
    ("slack-user-token", "SLACK_TOKEN", lambda r: f"xoxp-{pick(r, string.digits, 11)}-{pick(r, string.digits, 12)}-{pick(r, string.digits, 13)}-{pick(r, HEX, 32)}"),
    ("slack-webhook", "SLACK_WEBHOOK_URL", lambda r: f"https://hooks.slack.com/services/T{pick(r, UPPER_DIGITS, 10)}/B{pick(r, UPPER_DIGITS, 10)}/{pick(r, ALNUM, 24)}"),
    ("stripe-secret-key", "STRIPE_SECRET_KEY", lambda r: "sk_live_" + pick(r, ALNUM, 99)),
    ("stripe-restricted-key", "STRIPE_KEY", lambda r: "rk_live_" + pick(r, ALNUM, 24)),
    ("stripe-webhook-secret", "STRIPE_WEBHOOK_SECRET", lambda r: "whsec_" + pick(r, ALNUM, 32)),
    ("openai-project-key", "OPENAI_API_KEY", lambda r: "sk-proj-" + pick(r, URLSAFE, 156)),
    ("openai-legacy-key", "OPENAI_API_KEY", lambda r: "sk-" + pick(r, ALNUM, 20) + "T3BlbkFJ" + pick(r, ALNUM, 20)),
    ("anthropic-api-key", "ANTHROPIC_API_KEY", lambda r: "sk-ant-api03-" + pick(r, URLSAFE, 93) + "AA"),
    ("google-api-key", "GOOGLE_API_KEY", lambda r: "AIza" + pick(r, URLSAFE, 35)),
    ("sendgrid-api-key", "SENDGRID_API_KEY", lambda r: "SG." + pick(r, URLSAFE, 22) + "." + pick(r, URLSAFE, 43)),
    ("twilio-api-key", "TWILIO_API_KEY", lambda r: "SK" + pick(r, HEX, 32)),
    ("npm-token", "NPM_TOKEN", lambda r: "npm_" + pick(r, ALNUM, 36)),
    ("pypi-token", "PYPI_TOKEN", lambda r: "pypi-AgEIcHlwaS5vcmc" + pick(r, URLSAFE, 70)),
    ("huggingface-token", "HF_TOKEN", lambda r: "hf_" + pick(r, ALNUM, 34)),
    ("shopify-access-token", "SHOPIFY_TOKEN", lambda r: "shpat_" + pick(r, HEX, 32)),
    ("shopify-shared-secret", "SHOPIFY_SECRET", lambda r: "shpss_" + pick(r, HEX, 32)),
    ("databricks-token", "DATABRICKS_TOKEN", lambda r: "dapi" + pick(r, HEX, 32)),
    ("digitalocean-token", "DIGITALOCEAN_TOKEN", lambda r: r.choice(["dop", "doo", "dor"]) + "_v1_" + pick(r, HEX, 64)),
    ("postman-api-key", "POSTMAN_API_KEY", lambda r: "PMAK-" + pick(r, HEX, 24) + "-" + pick(r, HEX, 34)),
    ("sentry-dsn", "SENTRY_DSN", lambda r: f"https://{pick(r, HEX, 32)}@o{pick(r, string.digits, 6)}.ingest.sentry.io/{pick(r, string.digits, 7)}"),
    ("sentry-user-token", "SENTRY_AUTH_TOKEN", lambda r: "sntryu_" + pick(r, HEX, 64)),
    ("supabase-token", "SUPABASE_ACCESS_TOKEN", lambda r: "sbp_" + pick(r, HEX, 40)),
    ("planetscale-token", "PLANETSCALE_TOKEN", lambda r: "pscale_tkn_" + pick(r, URLSAFE, 43)),
    ("rubygems-key", "GEM_HOST_API_KEY", lambda r: "rubygems_" + pick(r, HEX, 48)),
    ("vault-service-token", "VAULT_TOKEN", lambda r: "hvs." + pick(r, URLSAFE, 90)),
    ("alibaba-access-key", "ALIBABA_ACCESS_KEY_ID", lambda r: "LTAI" + pick(r, ALNUM, 20)),
    ("newrelic-user-key", "NEW_RELIC_API_KEY", lambda r: "NRAK-" + pick(r, UPPER_DIGITS, 27)),
    ("mailgun-key", "MAILGUN_API_KEY", lambda r: "key-" + pick(r, HEX, 32)),
    ("mailchimp-key", "MAILCHIMP_API_KEY", lambda r: pick(r, HEX, 32) + "-us" + str(r.randrange(1, 21))),
    ("azure-client-secret", "AZURE_CLIENT_SECRET", lambda r: pick(r, ALNUM, 3) + r.choice(string.digits) + "Q~" + pick(r, ALNUM + "_~.-", 34)),
    ("azure-sas-url", "AZURE_SAS_URL", lambda r: f"https://{pick(r, string.ascii_lowercase, 10)}.blob.core.windows.net/data?sv=2022-11-02&ss=b&srt=sco&sp=rl&se=2026-12-31T00:00:00Z&sig={urllib.parse.quote(pick(r, B64, 43) + '=', safe='')}"),
    ("azure-storage-key", "AZURE_STORAGE_CONNECTION_STRING", lambda r: f"DefaultEndpointsProtocol=https;AccountName={pick(r, string.ascii_lowercase, 10)};AccountKey={pick(r, B64, 86)}==;EndpointSuffix=core.windows.net"),
    ("groq-api-key", "GROQ_API_KEY", lambda r: "gsk_" + pick(r, ALNUM, 52)),
    ("openrouter-key", "OPENROUTER_API_KEY", lambda r: "sk-or-v1-" + pick(r, HEX, 64)),
    ("xai-api-key", "XAI_API_KEY", lambda r: "xai-" + pick(r, ALNUM, 80)),
    ("perplexity-key", "PERPLEXITY_API_KEY", lambda r: "pplx-" + pick(r, ALNUM, 48)),
    ("replicate-token", "REPLICATE_API_TOKEN", lambda r: "r8_" + pick(r, ALNUM, 37)),
    ("nvidia-api-key", "NVIDIA_API_KEY", lambda r: "nvapi-" + pick(r, URLSAFE, 64)),
    ("langsmith-key", "LANGSMITH_API_KEY", lambda r: "lsv2_" + r.choice(["pt", "sk"]) + "_" + pick(r, HEX, 32) + "_" + pick(r, HEX, 10)),
    ("pinecone-key", "PINECONE_API_KEY", lambda r: "pcsk_" + pick(r, ALNUM, 6) + "_" + pick(r, ALNUM, 63)),
    ("jwt", "AUTH_TOKEN", jwt),
    ("private-key", "PRIVATE_KEY", pem),
    ("heroku-api-key", "HEROKU_API_KEY", uuid4),
    ("npm-legacy-auth-token", "_authToken", uuid4),
    ("discord-bot-token", "DISCORD_TOKEN", lambda r: r.choice("MN") + pick(r, ALNUM, 25) + "." + pick(r, URLSAFE, 6) + "." + pick(r, URLSAFE, 38)),
    ("telegram-bot-token", "TELEGRAM_BOT_TOKEN", lambda r: pick(r, string.digits, 10) + ":AA" + pick(r, URLSAFE, 33)),
    ("square-access-token", "SQUARE_ACCESS_TOKEN", lambda r: "EAAA" + pick(r, URLSAFE, 60)),
    ("mapbox-secret-token", "MAPBOX_SECRET", lambda r: "sk.eyJ1Ijoi" + pick(r, URLSAFE, 40) + "." + pick(r, URLSAFE, 22)),
    ("atlassian-api-token", "JIRA_API_TOKEN", lambda r: "ATATT3xFfGF0" + pick(r, URLSAFE, 170) + "=" + pick(r, HEX, 8).upper()),
    ("linear-api-key", "LINEAR_API_KEY", lambda r: "lin_api_" + pick(r, ALNUM, 40)),
    ("doppler-token", "DOPPLER_TOKEN", lambda r: "dp.pt." + pick(r, ALNUM, 43)),
    ("age-secret-key", "AGE_KEY", lambda r: "AGE-SECRET-KEY-1" + pick(r, BECH32, 58)),
    ("dockerhub-pat", "DOCKER_TOKEN", lambda r: "dckr_pat_" + pick(r, URLSAFE, 27)),
    ("grafana-service-account", "GRAFANA_TOKEN", lambda r: "glsa_" + pick(r, ALNUM, 32) + "_" + pick(r, HEX, 8)),
    ("notion-token", "NOTION_TOKEN", lambda r: "ntn_" + pick(r, ALNUM, 46)),
    ("airtable-pat", "AIRTABLE_TOKEN", lambda r: "pat" + pick(r, ALNUM, 14) + "." + pick(r, HEX, 64)),
    ("terraform-cloud-token", "TFE_TOKEN", lambda r: pick(r, ALNUM, 14) + ".atlasv1." + pick(r, URLSAFE, 67)),
    ("datadog-api-key", "DD_API_KEY", lambda r: pick(r, HEX, 32)),
    ("cloudflare-api-token", "CLOUDFLARE_API_TOKEN", lambda r: pick(r, URLSAFE, 40)),
    ("okta-api-token", "OKTA_API_TOKEN", lambda r: "00" + pick(r, URLSAFE, 40)),
]

# Where a developer pastes a secret into a prompt. `{k}` is the variable name, `{v}` the
# secret; each returns the text and the secret's offset is found by search.
CONTEXTS = [
    ("prose", "Here is my {k} value: {v} - why does the API still answer 401?"),
    ("log", "2026-11-02T10:14:07Z ERROR auth failed for request using {k}={v} (status=403)"),
    ("python", 'import os\n\nclient = Client(api_key="{v}")\nprint(client.ping())'),
    ("javascript", "const config = {{\n  {kl}: '{v}',\n  retries: 3,\n}};"),
    ("dotenv", "# production\nNODE_ENV=production\n{k}={v}\nPORT=8080"),
    ("json", '{{"service": "billing", "{kl}": "{v}", "timeout": 30}}'),
    ("yaml", "env:\n  - name: {k}\n    value: {v}\n  - name: LOG_LEVEL\n    value: info"),
    ("curl-header", "curl -H 'Authorization: Bearer {v}' https://api.example.com/v1/items"),
    ("shell-export", "export {k}={v}\n./deploy.sh --region eu-west-1"),
    ("toml", '[credentials]\n{kl} = "{v}"\nregion = "us-east-1"'),
    ("docker", "docker run -e {k}={v} -p 8080:8080 example/app:1.4"),
    ("markdown", "Config that fails:\n\n```\n{k}: {v}\n```\n\nAny idea what is wrong?"),
    ("go", 'func main() {{\n\tclient := api.New("{v}")\n\tclient.Run()\n}}'),
    ("xml", '<configuration>\n  <add key="{k}" value="{v}" />\n</configuration>'),
]


def render(context, keyword, value):
    return context.format(k=keyword, kl=keyword.lower().lstrip("_"), v=value)


def format_items(rng):
    items = []
    for name, keyword, make in FORMATS:
        for ctx_name, ctx in CONTEXTS:
            value = make(rng)
            text = render(ctx, keyword, value)
            start = text.index(value)
            items.append({"id": f"fmt:{name}:{ctx_name}", "set": "formats", "group": name, "text": text, "span": [start, start + len(value)]})
    return items


PASSWORD_CONTEXTS = [
    "password={v}",
    "DB_PASSWORD={v}",
    'conn = psycopg2.connect(host="db", user="app", password="{v}")',
    "jdbc:postgresql://db.internal:5432/orders?user=app&password={v}",
    "mysql -u root -p'{v}' -h 10.0.0.4",
    "pwd: {v}",
    "spring.datasource.password={v}",
    '"password": "{v}"',
    "PGPASSWORD={v} psql -h db -U app",
    "my password is {v}, please store it safely",
    "https://admin:{v}@grafana.internal.example.com/",
    "redis-cli -a {v} -h cache.internal",
]


def random_password(rng):
    length = rng.randrange(10, 21)
    classes = [string.ascii_lowercase, string.ascii_uppercase, string.digits, "!#$%&*+-.:;?@^_~"]
    chars = [rng.choice(c) for c in classes] + [rng.choice("".join(classes)) for _ in range(length - 4)]
    rng.shuffle(chars)
    return "".join(chars)


def password_items(rng):
    items = []
    for i, ctx in enumerate(PASSWORD_CONTEXTS):
        for j in range(4):
            value = random_password(rng)
            text = ctx.format(v=value)
            start = text.index(value)
            items.append({"id": f"pwd:{i}:{j}", "set": "passwords", "group": f"password-{i}", "text": text, "span": [start, start + len(value)]})
    return items


def wrapped_items(rng):
    """Secrets hidden by an encoding or split across lines."""
    items = []
    simple = [f for f in FORMATS if f[0] in {"github-classic-pat", "openai-project-key", "stripe-secret-key", "aws-access-key-id", "slack-bot-token", "anthropic-api-key", "groq-api-key", "npm-token"}]
    for name, keyword, make in simple:
        value = make(rng)
        line = f"{keyword}={value}"
        encodings = {
            "base64": f"echo {base64.b64encode(line.encode()).decode()} | base64 -d",
            "hex": "payload = bytes.fromhex('%s')" % line.encode().hex(),
            "percent": "https://example.com/callback?cfg=" + urllib.parse.quote(line, safe=""),
            "x-escape": 'data = "%s"' % "".join("\\x%02x" % b for b in line.encode()),
            "u-escape": 'const s = "%s";' % "".join("\\u%04x" % ord(c) for c in line),
            "split-plus": 'key = "%s" +\n      "%s"' % (value[: len(value) // 2], value[len(value) // 2 :]),
            "split-concat": 'key = ("%s"\n       "%s")' % (value[: len(value) // 2], value[len(value) // 2 :]),
        }
        for enc, text in encodings.items():
            items.append({"id": f"wrap:{name}:{enc}", "set": "wrapped", "group": enc, "text": text})
    return items


def hard_negatives(rng):
    """Public strings that look random: digests, integrity hashes, public keys, ids."""
    out = []

    def add(group, text):
        out.append({"id": f"neg:{group}:{len(out)}", "set": "hard-negatives", "group": group, "text": text})

    for _ in range(5):
        add("image-digest", f"image: nginx@sha256:{pick(rng, HEX, 64)}")
        add("npm-integrity", f'"integrity": "sha512-{pick(rng, B64, 86)}=="')
        add("go-sum", f"github.com/{pick(rng, string.ascii_lowercase, 6)}/{pick(rng, string.ascii_lowercase, 5)} v1.{rng.randrange(20)}.0 h1:{pick(rng, B64, 43)}=")
        add("ssh-public-key", f"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ{pick(rng, B64, 300)} user@laptop")
        add("data-uri", f'<img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA{pick(rng, B64, 120)}=" />')
        add("uuid-request-id", f"request {uuid4(rng)} completed in 35 ms")
        add("git-commit", f"This reverts commit {pick(rng, HEX, 40)}.")
        add("git-log", f"commit {pick(rng, HEX, 40)}\nAuthor: Jane <jane@example.com>\n\n    Fix the parser")
        add("k8s-uid", f"  uid: {uuid4(rng)}\n  resourceVersion: \"{rng.randrange(10**6)}\"")
        add("sha256sum", f"{pick(rng, HEX, 64)}  release-v2.{rng.randrange(9)}.tar.gz")
        add("md5-etag", f'ETag: "{pick(rng, HEX, 32)}"')
        add("cargo-lock", f'checksum = "{pick(rng, HEX, 64)}"')
        add("yarn-lock", f"  resolved \"https://registry.yarnpkg.com/lodash/-/lodash-4.17.21.tgz#{pick(rng, HEX, 40)}\"")
        add("pgp-public", f"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBF{pick(rng, B64, 60)}\n{pick(rng, B64, 64)}\n-----END PGP PUBLIC KEY BLOCK-----")
        add("eth-address", f"send to 0x{pick(rng, HEX + 'ABCDEF', 40)} on mainnet")
        add("stripe-publishable", f"Stripe('pk_live_{pick(rng, ALNUM, 24)}')")
        add("placeholder", rng.choice(["OPENAI_API_KEY=sk-...your-key-here...", "AWS_SECRET_ACCESS_KEY=<your-secret-key>", "token: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "GITHUB_TOKEN=${{ secrets.GITHUB_TOKEN }}", "api_key = os.environ['API_KEY']"]))
        add("camelcase-identifier", "const " + "".join(w.capitalize() for w in rng.sample(["account", "manager", "factory", "provider", "abstract", "singleton", "bean", "proxy", "handler", "visitor", "builder", "registry"], 6)) + " = new Factory();")
        add("css-module", f'<div class="Button_primary__{pick(rng, URLSAFE, 5)} css-{pick(rng, string.ascii_lowercase + string.digits, 7)}">')
        add("docker-image-id", f"Successfully built {pick(rng, HEX, 12)}\nsha256:{pick(rng, HEX, 64)}")
        add("webpack-chunk", f'<script src="/static/js/main.{pick(rng, HEX, 20)}.chunk.js"></script>')
    return out


def code_negatives(lockfile, registry):
    """Rust source as people paste it into a prompt: for every crate version this
    workspace locks (Cargo.lock), from its archive in cargo's download cache
    (`registry`: `$CARGO_HOME/registry/cache`, filled by `cargo fetch --locked`), the
    60 lines from two fifths into up to two of its `src/` files of 2 KB or more, in name
    order (past the licence header and imports, into the code).
    Identifiers such as `Tls13CipherSuite`, paths, alphabets, test vectors: none is a
    secret of the person asking. Read at run time, never committed."""
    out = []
    text = pathlib.Path(lockfile).read_text()
    locked = re.findall(r'name = "([^"]+)"\nversion = "([^"]+)"\nsource = "registry', text)
    caches = sorted(pathlib.Path(registry).glob("*"))
    for name, version in sorted(set(locked)):
        archive = next((c / f"{name}-{version}.crate" for c in caches if (c / f"{name}-{version}.crate").is_file()), None)
        if archive is None:
            continue
        with tarfile.open(archive) as tar:
            members = sorted(
                (m for m in tar.getmembers() if m.isfile() and m.name.endswith(".rs") and m.size > 2000
                 and m.name.startswith(f"{name}-{version}/src/")),
                key=lambda m: m.name,
            )[:2]
            for n, member in enumerate(members):
                source = tar.extractfile(member).read().decode("utf-8", errors="replace")
                lines = source.splitlines()
                lines = lines[len(lines) * 2 // 5 :][:60]
                out.append({"id": f"code:{name}:{n}", "set": "code", "group": "rust-crates",
                            "text": "Can you explain this code?\n\n" + "\n".join(lines)})
    return out
