using System.CommandLine;

namespace Poold.PgEnc;

/// <summary>pg_enc: encrypts a password with the AES key file into pool_passwd's <c>AES…</c> form (pgpool-II's options).</summary>
internal static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("pg_enc: encrypt a password for pool_passwd with the AES key file (pgpool-II compatible)")
        {
            new Option<string>("--key-file", "-k") { Description = "AES key file (default: $PGPOOLKEYFILE, then ~/.pgpoolkey)", HelpName = "KEY_FILE" },
            new Option<string>("--enc-key", "-K") { Description = "the encryption key itself", HelpName = "ENCRYPTION_KEY" },
            new Option<bool>("--prompt-for-key", "-P") { Description = "prompt for the encryption key" },
            new Option<bool>("--prompt", "-p") { Description = "prompt for the database password" },
            new Option<bool>("--update-pass", "-m") { Description = "write user:AES... into pool_passwd instead of printing it" },
            new Option<string>("--username", "-u") { Description = "user name for -m (default: the OS user)", HelpName = "USER" },
            new Option<string>("--config-file", "-f") { Description = "pgpool.conf that names pool_passwd (for -m and -i)", HelpName = "CONFIG_FILE" },
            new Option<string>("--input-file", "-i") { Description = "file of user:password lines to encrypt", HelpName = "INPUT_FILE" },
            new Argument<string?>("PASSWORD") { Arity = ArgumentArity.ZeroOrOne },
        };
        root.SetAction(_ =>
        {
            Console.Error.WriteLine("pg_enc: not available yet: this Poold build cannot encrypt passwords");
            return 1;
        });
        return root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null }).Invoke();
    }
}
