using System.CommandLine;
using System.Text;
using Poold.Auth;
using Poold.Config;
using Poold.Hosting;

namespace Poold.PgEnc;

/// <summary>
/// pg_enc: encrypts a password with the AES key into pool_passwd's <c>AES…</c> form, with pgpool-II's options, prompts,
/// output and exit codes. <c>-m</c> writes the entry into the pool_passwd the configuration names, atomically.
/// </summary>
internal static class Program
{
    private const int MaxInput = 128;

    public static int Main(string[] args)
    {
        var keyFile = new Option<string>("--key-file", "-k") { Description = "AES key file (default: $PGPOOLKEYFILE, then ~/.pgpoolkey)", HelpName = "KEY_FILE" };
        var encKey = new Option<string>("--enc-key", "-K") { Description = "the encryption key itself", HelpName = "ENCRYPTION_KEY" };
        var promptKey = new Option<bool>("--prompt-for-key", "-P") { Description = "prompt for the encryption key" };
        var prompt = new Option<bool>("--prompt", "-p") { Description = "prompt for the database password" };
        var update = new Option<bool>("--update-pass", "-m") { Description = "write user:AES... into pool_passwd instead of printing it" };
        var user = new Option<string>("--username", "-u") { Description = "user name for -m (default: the OS user)", HelpName = "USER" };
        var config = new Option<string>("--config-file", "-f") { Description = "pgpool.conf that names pool_passwd (for -m and -i)", HelpName = "CONFIG_FILE" };
        var input = new Option<string>("--input-file", "-i") { Description = "file of user:password lines to encrypt", HelpName = "INPUT_FILE" };
        var password = new Argument<string?>("PASSWORD") { Arity = ArgumentArity.ZeroOrOne };
        var root = new RootCommand("pg_enc: encrypt a password for pool_passwd with the AES key file (pgpool-II compatible)")
        {
            keyFile, encKey, promptKey, prompt, update, user, config, input, password,
        };
        root.SetAction(result => Run(new Request(
            result.GetValue(keyFile), result.GetValue(encKey), result.GetValue(promptKey), result.GetValue(prompt), result.GetValue(update),
            result.GetValue(user), result.GetValue(config), result.GetValue(input), result.GetValue(password))));
        return root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null }).Invoke();
    }

    private sealed record Request(
        string? KeyFile, string? EncKey, bool PromptForKey, bool Prompt, bool Update, string? User, string? ConfigFile, string? InputFile,
        string? Password);

    private static int Run(Request request)
    {
        try
        {
            return Encrypt(request);
        }
        catch (PgEncException e)
        {
            Console.Error.WriteLine(e.Message);
            return 1;
        }
    }

    private static int Encrypt(Request request)
    {
        var password = request.Password;
        if (request.InputFile is null && (request.Prompt || password is null))
        {
            password = ReadSecret("db password: ");
        }

        if (password is not null && Encoding.UTF8.GetByteCount(password) > MaxInput)
        {
            throw new PgEncException($"Error: Input exceeds maximum password length given:{Encoding.UTF8.GetByteCount(password)} max allowed:{MaxInput}!");
        }

        var key = ReadKey(request);
        string? poolPasswd = null;
        if (request.Update)
        {
            poolPasswd = PoolPasswdPath(request.ConfigFile);
        }

        if (request.InputFile is not null)
        {
            return EncryptFile(request.InputFile, key, poolPasswd);
        }

        var user = request.User ?? Environment.UserName;
        var entry = PoolPasswdCipher.Encrypt(password!, key);
        if (poolPasswd is not null)
        {
            PoolPasswdWriter.Upsert(poolPasswd, user, entry);
            return 0;
        }

        Console.WriteLine();
        Console.WriteLine(entry[PoolPasswdCipher.Prefix.Length..]);
        Console.WriteLine($"pool_passwd string: {entry}");
        return 0;
    }

    /// <summary><c>-i</c>: <c>user:password</c> per line (split at the first colon); a bad line is reported and skipped.</summary>
    private static int EncryptFile(string path, Secret key, string? poolPasswd)
    {
        Console.WriteLine($"trying to read username:password pairs from file {path}");
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new PgEncException($"failed to open input file \"{path}\": {e.Message}");
        }

        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i];
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0 || colon == line.Length - 1)
            {
                Console.Error.WriteLine($"LINE#{i + 1:00}: invalid username:password pair");
                continue;
            }

            var (user, password) = (line[..colon], line[(colon + 1)..]);
            if (Encoding.UTF8.GetByteCount(user) > MaxInput || Encoding.UTF8.GetByteCount(password) > MaxInput)
            {
                Console.Error.WriteLine($"LINE#{i + 1:00}: input exceeds maximum username/password length ({MaxInput} bytes)");
                continue;
            }

            var entry = PoolPasswdCipher.Encrypt(password, key);
            if (poolPasswd is not null)
            {
                PoolPasswdWriter.Upsert(poolPasswd, user, entry);
                continue;
            }

            Console.WriteLine();
            Console.WriteLine(entry[PoolPasswdCipher.Prefix.Length..]);
            Console.WriteLine($"pool_passwd string: {entry}");
        }

        return 0;
    }

    private static Secret ReadKey(Request request)
    {
        if (request.EncKey is not null)
        {
            return request.EncKey.Length > 0 ? new Secret(request.EncKey) : throw new PgEncException("encryption key not provided");
        }

        if (request.PromptForKey)
        {
            var typed = ReadSecret("encryption key: ");
            return typed.Length > 0 ? new Secret(typed) : throw new PgEncException("encryption key not provided");
        }

        var path = KeyFile.Locate(request.KeyFile);
        Console.WriteLine($"trying to read key from file {path}");
        try
        {
            return KeyFile.Read(path);
        }
        catch (KeyFileException e)
        {
            throw new PgEncException($"{e.Message}\nencryption key not provided");
        }
    }

    /// <summary>The pool_passwd named by the configuration, resolved against its folder (as pgpool-II 4.3.14+ does).</summary>
    private static string PoolPasswdPath(string? configFile)
    {
        var path = configFile ?? DefaultConfigFile();
        PooldSettings settings;
        try
        {
            (settings, _) = PooldSettings.Load(path);
        }
        catch (ConfigException e)
        {
            throw new PgEncException($"{e.Message}\nUnable to get configuration. Exiting...");
        }

        var poolPasswd = settings.Get(Params.PoolPasswd);
        return poolPasswd.Length > 0
            ? settings.ResolvePath(poolPasswd)
            : throw new PgEncException($"pool_passwd is disabled in \"{path}\" (pool_passwd = ''): nothing to update");
    }

    private static string DefaultConfigFile()
    {
        foreach (var candidate in new[] { Path.Combine(AppContext.BaseDirectory, "..", "..", "etc", "poold.conf"), "/etc/pgpool2/pgpool.conf" })
        {
            if (File.Exists(candidate))
            {
                return Path.GetFullPath(candidate);
            }
        }

        throw new PgEncException("no configuration file found: give one with -f\nUnable to get configuration. Exiting...");
    }

    /// <summary>Reads a line without echo from the terminal, or a plain line when standard input is redirected.</summary>
    private static string ReadSecret(string prompt) =>
        Terminal.ReadSecret(prompt, Console.Out) ?? throw new PgEncException("stdin is not tty");

    private sealed class PgEncException(string message) : Exception(message);
}
