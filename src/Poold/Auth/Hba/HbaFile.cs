using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Text;
using Poold.Config;

namespace Poold.Auth.Hba;

/// <summary>
/// pool_hba.conf in PostgreSQL's pg_hba syntax as pgpool-II reads it: one record per line, fields separated by spaces,
/// <c>#</c> comments, double quotes for names with spaces or keywords taken literally, comma lists, <c>@file</c> name
/// lists. The first record that matches decides.
/// </summary>
internal sealed class HbaFile
{
    private const int MaxIncludeDepth = 10;

    private HbaFile(string path, IReadOnlyList<HbaRecord> records, IReadOnlyList<string> warnings)
    {
        Path = path;
        Records = records;
        UsesHostNames = records.Any(r => r.Address?.IsHostName == true);
        Warnings = warnings;
    }

    public string Path { get; }

    public IReadOnlyList<HbaRecord> Records { get; }

    /// <summary>Lines that load but can never match (pgpool-II's unsupported keywords) or options that are ignored.</summary>
    public IReadOnlyList<string> Warnings { get; }

    /// <summary>
    /// Some record names a host: matching may wait for DNS, so it must not run on a socket event thread (where
    /// Poold's sessions run, see Hosting/SocketTuning).
    /// </summary>
    public bool UsesHostNames { get; }

    public HbaRecord? Match(in HbaRequest request, bool sslEnabled)
    {
        foreach (var record in Records)
        {
            if (record.Matches(request, sslEnabled))
            {
                return record;
            }
        }

        return null;
    }

    public static HbaFile Load(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path, Encoding.UTF8);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException([ConfigDiagnostic.Error(path, 0, $"cannot read pool_hba.conf: {e.Message}")]);
        }

        return Parse(text, path);
    }

    public static HbaFile Parse(string text, string path)
    {
        var records = new List<HbaRecord>();
        var errors = new List<ConfigDiagnostic>();
        var warnings = new List<string>();
        var lineNumber = 0;
        foreach (var rawLine in text.Split('\n'))
        {
            lineNumber++;
            try
            {
                var fields = Tokenize(rawLine.TrimEnd('\r'));
                if (fields.Count == 0)
                {
                    continue;
                }

                records.Add(ParseRecord(fields, path, lineNumber, warnings));
            }
            catch (FormatException e)
            {
                errors.Add(ConfigDiagnostic.Error(path, lineNumber, e.Message));
            }
        }

        if (errors.Count > 0)
        {
            throw new ConfigException(errors);
        }

        return new HbaFile(path, records, warnings);
    }

    /// <summary>One token of a field: its text and whether it was quoted (a quoted keyword is a plain name).</summary>
    private readonly record struct Token(string Text, bool Quoted);

    /// <summary>Splits a line into fields, each a comma list of tokens.</summary>
    private static List<List<Token>> Tokenize(string line)
    {
        var fields = new List<List<Token>>();
        var i = 0;
        while (true)
        {
            while (i < line.Length && char.IsWhiteSpace(line[i]))
            {
                i++;
            }

            if (i >= line.Length || line[i] == '#')
            {
                return fields;
            }

            var field = new List<Token>();
            while (true)
            {
                var token = new StringBuilder();
                var quoted = false;
                while (i < line.Length && !char.IsWhiteSpace(line[i]) && line[i] != ',' && line[i] != '#')
                {
                    if (line[i] == '"')
                    {
                        quoted = true;
                        var close = line.IndexOf('"', i + 1);
                        if (close < 0)
                        {
                            throw new FormatException("unterminated quoted string");
                        }

                        token.Append(line, i + 1, close - i - 1);
                        i = close + 1;
                    }
                    else
                    {
                        token.Append(line[i++]);
                    }
                }

                if (token.Length == 0 && !quoted)
                {
                    throw new FormatException($"empty entry in a comma list near column {i + 1}");
                }

                field.Add(new Token(token.ToString(), quoted));
                if (i < line.Length && line[i] == ',')
                {
                    // As PostgreSQL: a list may continue after spaces ("alice, bob").
                    i++;
                    while (i < line.Length && char.IsWhiteSpace(line[i]))
                    {
                        i++;
                    }

                    continue;
                }

                break;
            }

            fields.Add(field);
        }
    }

    private static HbaRecord ParseRecord(List<List<Token>> fields, string path, int line, List<string> warnings)
    {
        var where = $"{path}:{line}";
        var type = Single(fields[0], "connection type") switch
        {
            "local" => HbaConnectionType.Local,
            "host" => HbaConnectionType.Host,
            "hostssl" => HbaConnectionType.HostSsl,
            "hostnossl" => HbaConnectionType.HostNoSsl,
            var other => throw new FormatException($"invalid connection type \"{other}\" (expected local, host, hostssl or hostnossl)"),
        };
        if (fields.Count < 4)
        {
            throw new FormatException("end-of-line before authentication method (expected: TYPE DATABASE USER " +
                                      (type == HbaConnectionType.Local ? "" : "ADDRESS ") + "METHOD)");
        }

        var directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path)) ?? ".";
        var databases = Names(fields[1], directory, where, "database", warnings);
        var users = Names(fields[2], directory, where, "user", warnings);
        var next = 3;
        HbaAddress? address = null;
        if (type != HbaConnectionType.Local)
        {
            address = ParseAddress(fields, ref next);
        }

        if (next >= fields.Count)
        {
            throw new FormatException("end-of-line before authentication method");
        }

        var methodName = Single(fields[next], "authentication method");
        var method = methodName switch
        {
            "trust" => HbaMethod.Trust,
            "reject" => HbaMethod.Reject,
            "password" => HbaMethod.Password,
            "md5" => HbaMethod.Md5,
            "scram-sha-256" => HbaMethod.ScramSha256,
            "cert" => HbaMethod.Cert,
            "pam" or "ldap" or "gss" or "sspi" or "ident" or "peer" or "radius" or "bsd" =>
                throw new FormatException($"authentication method \"{methodName}\" is not supported by Poold (use trust, reject, password, md5, scram-sha-256 or cert)"),
            _ => throw new FormatException($"invalid authentication method \"{methodName}\""),
        };
        if (method == HbaMethod.Cert && type != HbaConnectionType.HostSsl)
        {
            throw new FormatException("cert authentication is only supported on hostssl connections");
        }

        for (var i = next + 1; i < fields.Count; i++)
        {
            var option = Single(fields[i], "option");
            if (!option.Contains('=', StringComparison.Ordinal))
            {
                throw new FormatException($"authentication option \"{option}\" is not in name=value format");
            }

            warnings.Add($"{where}: authentication option \"{option}\" is ignored");
        }

        return new HbaRecord
        {
            Type = type,
            Databases = databases,
            Users = users,
            Address = address,
            Method = method,
            File = path,
            Line = line,
        };
    }

    private static string Single(List<Token> field, string what) =>
        field.Count == 1 ? field[0].Text : throw new FormatException($"multiple values given for the {what}");

    private static List<HbaName> Names(List<Token> field, string directory, string where, string what, List<string> warnings)
    {
        var names = new List<HbaName>();
        foreach (var token in field)
        {
            AddName(token, directory, where, what, warnings, names, depth: 0);
        }

        return names;
    }

    private static void AddName(Token token, string directory, string where, string what, List<string> warnings, List<HbaName> names, int depth)
    {
        if (!token.Quoted && token.Text.StartsWith('@') && token.Text.Length > 1)
        {
            IncludeNames(token.Text[1..], directory, where, what, warnings, names, depth);
            return;
        }

        if (token.Quoted)
        {
            names.Add(new HbaName(token.Text, IsKeyword: false));
            return;
        }

        switch (token.Text)
        {
            case "all":
            case "sameuser" or "replication" when what == "database":
                names.Add(new HbaName(token.Text, IsKeyword: true));
                break;
            case "samegroup" or "samerole" when what == "database":
                warnings.Add($"{where}: \"{token.Text}\" is not supported (as in pgpool-II): it never matches");
                names.Add(new HbaName(token.Text, IsKeyword: true));
                break;
            case ['+', ..] when what == "user":
                warnings.Add($"{where}: group membership \"{token.Text}\" is not supported (as in pgpool-II): it never matches");
                names.Add(new HbaName(token.Text, IsKeyword: true));
                break;
            default:
                names.Add(new HbaName(token.Text, IsKeyword: false));
                break;
        }
    }

    /// <summary>An <c>@file</c>: names separated by spaces, commas or lines, <c>#</c> comments, relative to pool_hba.conf.</summary>
    private static void IncludeNames(string file, string directory, string where, string what, List<string> warnings, List<HbaName> names, int depth)
    {
        if (depth >= MaxIncludeDepth)
        {
            throw new FormatException($"@{file}: included files nest more than {MaxIncludeDepth} deep");
        }

        var path = System.IO.Path.IsPathRooted(file) ? file : System.IO.Path.Combine(directory, file);
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            // ArgumentException: a name the file system cannot take (a NUL byte in it).
            throw new FormatException($"could not open secondary authentication file \"@{file}\" as \"{path}\": {e.Message}");
        }

        var innerDirectory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path)) ?? directory;
        foreach (var line in lines)
        {
            foreach (var field in Tokenize(line))
            {
                foreach (var token in field)
                {
                    AddName(token, innerDirectory, where, what, warnings, names, depth + 1);
                }
            }
        }
    }

    private static HbaAddress ParseAddress(List<List<Token>> fields, ref int next)
    {
        var text = Single(fields[next++], "IP address");
        switch (text)
        {
            case "all":
                return HbaAddress.All;
            case "samehost":
            case "samenet":
                return LocalAddresses(text == "samenet");
        }

        var slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash >= 0)
        {
            if (!IPAddress.TryParse(text.AsSpan(0, slash), out var network))
            {
                throw new FormatException($"invalid IP address \"{text[..slash]}\"");
            }

            var bits = network.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;
            if (!int.TryParse(text.AsSpan(slash + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var prefix)
                || prefix > bits)
            {
                throw new FormatException($"invalid CIDR mask in address \"{text}\"");
            }

            return HbaAddress.Network(network, PrefixMask(prefix, bits / 8));
        }

        if (IPAddress.TryParse(text, out var address))
        {
            if (next >= fields.Count)
            {
                throw new FormatException("end-of-line before netmask specification");
            }

            var maskText = Single(fields[next++], "netmask");
            if (!IPAddress.TryParse(maskText, out var mask) || mask.AddressFamily != address.AddressFamily)
            {
                throw new FormatException($"invalid IP mask \"{maskText}\"");
            }

            return HbaAddress.Network(address, mask.GetAddressBytes());
        }

        if (text.Length == 0 || text.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_')))
        {
            throw new FormatException($"invalid IP address or host name \"{text}\"");
        }

        return HbaAddress.Host(text);
    }

    private static byte[] PrefixMask(int prefix, int length)
    {
        var mask = new byte[length];
        for (var i = 0; i < length; i++)
        {
            var bits = Math.Clamp(prefix - (i * 8), 0, 8);
            mask[i] = (byte)(0xFF << (8 - bits));
        }

        return mask;
    }

    /// <summary><c>samehost</c>: any of this machine's addresses; <c>samenet</c>: any subnet this machine is on.</summary>
    private static HbaAddress LocalAddresses(bool subnets)
    {
        var networks = new List<HbaAddress>();
        foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
        {
            foreach (var unicast in nic.GetIPProperties().UnicastAddresses)
            {
                var length = unicast.Address.AddressFamily == AddressFamily.InterNetwork ? 4 : 16;
                var prefix = subnets ? unicast.PrefixLength : length * 8;
                networks.Add(HbaAddress.Network(unicast.Address, PrefixMask(prefix, length)));
            }
        }

        return HbaAddress.AnyOf(networks);
    }
}
