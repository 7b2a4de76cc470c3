using Poold.Auth.Hba;
using Poold.Config;
using Serilog;

namespace Poold.Auth;

/// <summary>
/// pool_hba.conf, pool_passwd and the AES key, read together at start and on every reload. Sessions take the
/// generation in force when they start; a reload that fails keeps the previous one.
/// </summary>
internal sealed class AuthFiles
{
    public static readonly AuthFiles None = new(null, PoolPasswd.Empty, null, null);

    private AuthFiles(HbaFile? hba, PoolPasswd passwords, Secret? key, string? keyProblem)
    {
        Hba = hba;
        Passwords = passwords;
        Key = key;
        KeyProblem = keyProblem;
    }

    /// <summary>Loaded when <c>enable_pool_hba = on</c>.</summary>
    public HbaFile? Hba { get; }

    public PoolPasswd Passwords { get; }

    /// <summary>The AES key; null when no usable key file was found (see <see cref="KeyProblem"/>).</summary>
    public Secret? Key { get; }

    public string? KeyProblem { get; }

    /// <summary>The pool_hba.conf path: <c>-a</c>, else <c>pool_hba.conf</c> next to the configuration file.</summary>
    public static string HbaPath(PooldSettings settings, string? option) =>
        !string.IsNullOrEmpty(option) ? Path.GetFullPath(option) : settings.ResolvePath("pool_hba.conf");

    /// <summary>
    /// Reads the three files. Throws <see cref="ConfigException"/> with <c>file:line</c> diagnostics for a bad
    /// pool_hba.conf or pool_passwd, and for a key file that exists but cannot be used (group/world access, empty)
    /// when it was named with <c>-k</c> or an AES entry needs it; a missing key otherwise is only a warning, since
    /// pgpool-II also starts without one.
    /// </summary>
    public static AuthFiles Load(PooldSettings settings, string? hbaOption, string? keyOption, ILogger log)
    {
        var where = settings.ConfigFile ?? "configuration";
        HbaFile? hba = null;
        if (settings.Get(Params.EnablePoolHba))
        {
            var path = HbaPath(settings, hbaOption);
            hba = HbaFile.Load(path);

            foreach (var warning in hba.Warnings)
            {
                log.Warning("{Diagnostic}", warning);
            }
        }

        var passwdSetting = settings.Get(Params.PoolPasswd);
        PoolPasswd passwords;
        try
        {
            passwords = PoolPasswd.Load(passwdSetting.Length == 0 ? null : settings.ResolvePath(passwdSetting));
        }
        catch (PoolPasswdException e)
        {
            throw new ConfigException([ConfigDiagnostic.Error(where, 0, e.Message)]);
        }

        if (passwords.Path is { } p && !File.Exists(p))
        {
            log.Information("pool_passwd file \"{File}\" does not exist: no user has a stored password", p);
        }

        var keyPath = KeyFile.Locate(keyOption);
        Secret? key = null;
        string? keyProblem = null;
        try
        {
            key = KeyFile.Read(keyPath);
        }
        catch (KeyFileException e)
        {
            keyProblem = e.Message;
            var needed = passwords.HasAesEntries;
            if (!string.IsNullOrEmpty(keyOption) || (needed && File.Exists(keyPath)))
            {
                throw new ConfigException([ConfigDiagnostic.Error(keyPath, 0, e.Message)]);
            }

            if (needed)
            {
                log.Warning("{Problem}: users with AES passwords in pool_passwd cannot log in", e.Message);
            }
        }

        return new AuthFiles(hba, passwords, key, keyProblem);
    }
}
