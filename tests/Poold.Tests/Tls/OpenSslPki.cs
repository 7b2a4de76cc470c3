using System.Diagnostics;

namespace Poold.Tests.Tls;

/// <summary>
/// A test PKI made by the <c>openssl</c> CLI, as operators make theirs: a CA (and a foreign CA with the same name),
/// client certificates <c>good</c> and <c>revoked</c> for one CN, CRLs (<c>empty-crl.pem</c> before the revocation,
/// <c>crl.pem</c> after, <c>expired-crl.pem</c> the same list whose nextUpdate passed a day ago, <c>foreign-crl.pem</c> signed by the other CA), server certificates <c>server</c> and
/// <c>server2</c> with plain keys, and <c>server.key</c> encrypted the traditional way (<c>server.trad.key</c>,
/// Proc-Type: 4,ENCRYPTED), as PKCS#8 (<c>server.p8.key</c>), and an EC key (<c>ec.crt</c>, <c>ec.trad.key</c>).
/// Shared with the integration tests (linked file).
/// </summary>
internal static class OpenSslPki
{
    private const string Script = """
        set -e
        cd "$1"; cn="$2"; pass="$3"
        cat > ca.cnf <<CNF
        [ ca ]
        default_ca = CA_default
        [ CA_default ]
        dir = .
        database = index.txt
        new_certs_dir = .
        certificate = ca.crt
        private_key = ca.key
        crlnumber = crlnumber
        default_md = sha256
        default_crl_days = 30
        policy = policy_any
        [ policy_any ]
        commonName = supplied
        CNF
        touch index.txt; echo 1000 > crlnumber
        q() { "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; "$@"; }; }
        q openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -subj "/CN=Poold Test CA" -days 2 -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign,cRLSign
        q openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.crt -subj "/CN=Poold Test CA" -days 2 -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign,cRLSign
        for name in good revoked; do
          q openssl req -newkey rsa:2048 -nodes -keyout $name.key -out $name.csr -subj "/CN=$cn"
          q openssl x509 -req -in $name.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $name.crt -days 1
        done
        q openssl ca -config ca.cnf -gencrl -out empty-crl.pem
        q openssl ca -config ca.cnf -revoke revoked.crt
        q openssl ca -config ca.cnf -gencrl -out crl.pem
        q openssl ca -config ca.cnf -gencrl -crl_lastupdate "$(date -u -d '-2 days' +%Y%m%d%H%M%SZ)" -crl_nextupdate "$(date -u -d '-1 day' +%Y%m%d%H%M%SZ)" -out expired-crl.pem
        sed 's/ca.key/other-ca.key/; s/certificate = ca.crt/certificate = other-ca.crt/' ca.cnf > other-ca.cnf
        q openssl ca -config other-ca.cnf -gencrl -out foreign-crl.pem
        for s in server server2; do
          q openssl req -x509 -newkey rsa:2048 -nodes -keyout $s.key -out $s.crt -subj "/CN=localhost" -days 1
        done
        q openssl rsa -in server.key -aes256 -traditional -passout "pass:$pass" -out server.trad.key
        q openssl pkcs8 -topk8 -v2 aes-256-cbc -in server.key -passout "pass:$pass" -out server.p8.key
        q openssl ecparam -name prime256v1 -genkey -noout -out ec.key
        q openssl req -x509 -key ec.key -out ec.crt -subj "/CN=localhost" -days 1
        q openssl ec -in ec.key -aes256 -passout "pass:$pass" -out ec.trad.key

        """;

    public static void Create(string directory, string commonName, string passphrase)
    {
        var info = new ProcessStartInfo("bash") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var argument in new[] { "-c", Script, "pki", directory, commonName, passphrase })
        {
            info.ArgumentList.Add(argument);
        }

        using var process = Process.Start(info) ?? throw new InvalidOperationException("cannot run bash");
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(120)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException("openssl took more than 120 s");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"openssl failed ({process.ExitCode}): {stderr.Result}{stdout.Result}");
        }
    }
}
