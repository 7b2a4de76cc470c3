using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Security.Cryptography;
using Poold.Config;
using Poold.Protocol;

namespace Poold.Sessions;

/// <summary>
/// Cancel requests across several Poolds behind one TCP load balancer (<c>peer_id</c>, <c>peers</c>): a client's
/// CancelRequest usually reaches another instance than the one holding its session. Each instance puts its peer id in
/// the top byte of the cancel secret it hands out (the other 24 bits stay random; with peer_id = 0 all 32 are); an
/// instance that gets a key of another peer's forwards the packet to that peer, once: a key it forwarded in the last
/// few seconds is not forwarded again, so a misconfigured pair of peers cannot bounce a cancel between them.
/// </summary>
internal sealed class PeerCancels
{
    private static readonly TimeSpan Remembered = TimeSpan.FromSeconds(5);

    private readonly ConcurrentDictionary<(int ProcessId, int Secret), long> _forwarded = new();
    private readonly TimeProvider _time;

    public PeerCancels(TimeProvider time) => _time = time;

    /// <summary>A new session's cancel secret, carrying <paramref name="peerId"/> when there is one.</summary>
    public static int NewSecret(int peerId) =>
        peerId == 0 ? RandomNumberGenerator.GetInt32(int.MinValue, int.MaxValue) : (peerId << 24) | RandomNumberGenerator.GetInt32(0, 1 << 24);

    /// <summary>The peer a secret was handed out by (0 when none says).</summary>
    public static int PeerOf(int secret) => (int)((uint)secret >> 24);

    /// <summary>
    /// The peer to forward an unknown key to, or null: peering is on, the key names another instance listed in
    /// <c>peers</c>, and this key was not forwarded within the last few seconds.
    /// </summary>
    public CancelPeer? ForwardTarget(PooldSettings settings, int processId, int secret)
    {
        var own = settings.Get(Params.PeerId);
        var peerId = PeerOf(secret);
        if (own == 0 || peerId == own || peerId == 0)
        {
            return null;
        }

        var peer = settings.Get(Params.Peers).Select(CancelPeer.TryParse).FirstOrDefault(p => p?.Id == peerId);
        if (peer is null)
        {
            return null;
        }

        var now = _time.GetTimestamp();
        if (_forwarded.TryGetValue((processId, secret), out var at) && _time.GetElapsedTime(at, now) < Remembered)
        {
            return null;
        }

        _forwarded[(processId, secret)] = now;
        if (_forwarded.Count > 1024)
        {
            foreach (var (key, when) in _forwarded)
            {
                if (_time.GetElapsedTime(when, now) >= Remembered)
                {
                    _forwarded.TryRemove(key, out _);
                }
            }
        }

        return peer;
    }

    /// <summary>Sends the CancelRequest to the peer and waits until it closes the connection (it has acted by then).</summary>
    public static async Task SendAsync(CancelPeer peer, int processId, int secret, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(peer.Host, peer.Port, deadline.Token);
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        await stream.WriteAsync(new MessageBuffer(16).CancelRequest(processId, secret).Written, deadline.Token);
        var sink = new byte[16];
        while (await stream.ReadAsync(sink, deadline.Token) > 0)
        {
            // A Poold answers a cancel with nothing and closes.
        }
    }
}
