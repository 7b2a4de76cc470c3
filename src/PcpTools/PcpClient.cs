using System.Net.Sockets;
using System.Text;
using Poold.Auth;
using Poold.Hosting;
using Poold.Pcp;

namespace Poold.PcpTools;

/// <summary>A failure the pcp_* tools report and exit with: the text pgpool-II prints, and its exit code.</summary>
internal sealed class PcpToolException(string message, int exitCode = 1) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}

/// <summary>An ERROR the server answered: printed, and (as pgpool-II's tools do) not a failure exit.</summary>
internal sealed class PcpServerError(string severity, string message, string? detail) : Exception(message)
{
    public string Severity { get; } = severity;

    public string? Detail { get; } = detail;
}

/// <summary>
/// The client side of PCP (compat §4): a TCP or Unix-socket connection, pgpool's salted md5 login, and request /
/// reply exchanges. With <c>-d</c> every packet is traced as pgpool-II's tools trace them.
/// </summary>
internal sealed class PcpClient : IAsyncDisposable
{
    private readonly Stream _stream;
    private readonly bool _debug;

    private PcpClient(Stream stream, bool debug)
    {
        _stream = stream;
        _debug = debug;
    }

    /// <summary>Connects: no host means the socket /tmp/.s.PGSQL.port; a host starting with '/' is a socket directory.</summary>
    public static async Task<PcpClient> ConnectAsync(string? host, int port, bool debug)
    {
        Socket socket;
        if (string.IsNullOrEmpty(host) || host.StartsWith('/'))
        {
            var path = Path.Combine(string.IsNullOrEmpty(host) ? "/tmp" : host, $".s.PGSQL.{port}");
            socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
            }
            catch (SocketException e)
            {
                socket.Dispose();
                throw new PcpToolException($"ERROR: connection to socket \"{path}\" failed with error \"{Describe(e)}\"");
            }
        }
        else
        {
            socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await socket.ConnectAsync(host, port);
            }
            catch (SocketException e)
            {
                socket.Dispose();
                throw new PcpToolException($"ERROR: connection to host \"{host}\" failed with error \"{Describe(e)}\"");
            }
        }

        return new PcpClient(new NetworkStream(socket, ownsSocket: true), debug);
    }

    private static string Describe(SocketException e) => e.SocketErrorCode switch
    {
        SocketError.ConnectionRefused => "Connection refused",
        SocketError.AddressNotAvailable or SocketError.HostNotFound => "Name or service not known",
        _ when e.NativeErrorCode == 2 => "No such file or directory",
        _ => e.Message,
    };

    /// <summary>Salt request, then user and md5hex(md5hex(md5hex(password) ‖ user) ‖ salt).</summary>
    public async Task AuthenticateAsync(string user, string password)
    {
        await SendAsync((byte)'M', []);
        var (tag, salt) = await ReceiveAsync();
        if (tag != (byte)'m' || salt.Length != 4)
        {
            throw new PcpToolException("ERROR: unexpected answer to the salt request");
        }

        var stored = Md5Password.PcpHash(password);
        var hash = Md5Password.SaltedResponse(Md5Password.Hash(stored, user), salt)[3..];
        await SendAsync((byte)'R', PcpPacket.Strings(0, user, hash).AsSpan(5).ToArray());
        var (answer, _) = await ReceiveAsync();
        if (answer != (byte)'r')
        {
            throw new PcpToolException("ERROR: authentication failed");
        }
    }

    /// <summary>Sends a request and returns the reply packets up to and including the one that ends it.</summary>
    public async Task<List<(byte Tag, byte[] Body)>> RequestAsync(byte tag, byte[] body, Func<byte, byte[], bool> isLast)
    {
        await SendAsync(tag, body);
        var replies = new List<(byte, byte[])>();
        while (true)
        {
            var (replyTag, replyBody) = await ReceiveAsync();
            replies.Add((replyTag, replyBody));
            if (isLast(replyTag, replyBody))
            {
                return replies;
            }
        }
    }

    private async Task SendAsync(byte tag, byte[] body)
    {
        var packet = PcpPacket.Frame(tag, body);
        if (_debug)
        {
            await Console.Error.WriteLineAsync($"DEBUG: send: tos=\"{(char)tag}\", len={body.Length + 4}");
        }

        await _stream.WriteAsync(packet);
        await _stream.FlushAsync();
    }

    /// <summary>Reads one reply, skipping notices; an 'E' becomes <see cref="PcpServerError"/>.</summary>
    private async Task<(byte Tag, byte[] Body)> ReceiveAsync()
    {
        while (true)
        {
            var packet = await PcpPacket.ReadAsync(_stream, int.MaxValue, CancellationToken.None)
                         ?? throw new PcpToolException("ERROR: unable to read data from the server (connection closed)");
            if (_debug)
            {
                await Console.Error.WriteLineAsync($"DEBUG: recv: tos=\"{(char)packet.Tag}\", len={packet.Body.Length + 4}");
            }

            if (packet.Tag == (byte)'N')
            {
                continue;
            }

            if (packet.Tag == (byte)'E')
            {
                var fields = PcpPacket.ErrorFields(packet.Body);
                throw new PcpServerError(fields.GetValueOrDefault('S', "ERROR"), fields.GetValueOrDefault('M', ""), fields.GetValueOrDefault('D'));
            }

            return packet;
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await _stream.WriteAsync(PcpPacket.Frame((byte)'X', []));
        }
        catch (IOException)
        {
            // The server closed first.
        }

        await _stream.DisposeAsync();
    }
}

/// <summary>
/// The password for a PCP login, as pgpool-II's tools find it: <c>-W</c> prompts; otherwise the first matching line of
/// <c>$PCPPASSFILE</c> or <c>~/.pcppass</c> (<c>host:port:user:password</c>, <c>*</c> wildcards, <c>\:</c> escapes;
/// ignored when group or others can read it); with neither, a prompt when a terminal is there (4.3's behaviour)
/// unless <c>-w</c>.
/// </summary>
internal static class PcpPassword
{
    public static string Find(string? host, int port, string user, bool prompt, bool noPassword)
    {
        if (prompt)
        {
            return Prompt();
        }

        if (FromFile(string.IsNullOrEmpty(host) ? "localhost" : host, port, user) is { } stored)
        {
            return stored;
        }

        return !noPassword && !Console.IsInputRedirected ? Prompt() : "";
    }

    private static string? FromFile(string host, int port, string user)
    {
        var path = Environment.GetEnvironmentVariable("PCPPASSFILE") is { Length: > 0 } env
            ? env
            : Path.Combine(Environment.GetEnvironmentVariable("HOME") ?? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".pcppass");
        try
        {
            var info = new FileInfo(path);
            const UnixFileMode groupOrOther = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
                                              | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;
            if (!info.Exists || (info.UnixFileMode & groupOrOther) != 0)
            {
                return null;
            }

            foreach (var line in File.ReadLines(path))
            {
                var fields = Split(line);
                if (fields.Count == 4 && Matches(fields[0], host) && Matches(fields[1], port.ToString(System.Globalization.CultureInfo.InvariantCulture))
                    && Matches(fields[2], user))
                {
                    return fields[3];
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        return null;
    }

    private static bool Matches(string pattern, string value) => pattern == "*" || pattern == value;

    private static List<string> Split(string line)
    {
        var fields = new List<string>();
        var current = new StringBuilder();
        for (var i = 0; i < line.Length; i++)
        {
            if (line[i] == '\\' && i + 1 < line.Length)
            {
                current.Append(line[++i]);
            }
            else if (line[i] == ':' && fields.Count < 3)
            {
                fields.Add(current.ToString());
                current.Clear();
            }
            else
            {
                current.Append(line[i]);
            }
        }

        fields.Add(current.ToString());
        return fields;
    }

    private static string Prompt()
    {
        // pgpool-II's tools show the prompt even when standard input is redirected.
        if (Console.IsInputRedirected)
        {
            Console.Error.Write("Password: ");
        }

        return Terminal.ReadSecret("Password: ", Console.Error) ?? "";
    }
}
