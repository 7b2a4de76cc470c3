using System.Net.Sockets;
using System.Text;
using Poold.Hosting;

namespace Poold.Tests.Hosting;

public class SystemdNotifyTests
{
    private static Func<string, string?> Env(params (string Name, string Value)[] values) =>
        name => values.FirstOrDefault(v => v.Name == name).Value;

    [Test]
    public void WithoutNotifySocket_OrWithAnotherKind_ThereIsNoNotifier()
    {
        Assert.That(SystemdNotify.FromEnvironment(environment: Env()), Is.Null);
        Assert.That(SystemdNotify.FromEnvironment(environment: Env(("NOTIFY_SOCKET", "vsock:2:1234"))), Is.Null);
    }

    [Test]
    public void PathSocket_ReceivesOneDatagramPerState()
    {
        var path = Path.Combine(Path.GetTempPath(), $"poold-notify-{Guid.NewGuid():N}.sock");
        using var server = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        server.Bind(new UnixDomainSocketEndPoint(path));
        try
        {
            using var notify = SystemdNotify.FromEnvironment(() => "3 clients", Env(("NOTIFY_SOCKET", path)))!;
            server.ReceiveTimeout = 5000;
            var buffer = new byte[1024];
            notify.Ready();
            Assert.That(Encoding.UTF8.GetString(buffer, 0, server.Receive(buffer)), Is.EqualTo("READY=1\nSTATUS=3 clients"));
            notify.Reloading();
            Assert.That(Encoding.UTF8.GetString(buffer, 0, server.Receive(buffer)), Does.Match("^RELOADING=1\nMONOTONIC_USEC=[0-9]+$"));
            notify.Stopping();
            Assert.That(Encoding.UTF8.GetString(buffer, 0, server.Receive(buffer)), Is.EqualTo("STOPPING=1"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void SendToAMissingSocket_FailsQuietly()
    {
        using var notify = SystemdNotify.FromEnvironment(environment: Env(("NOTIFY_SOCKET", "/nonexistent/notify.sock")))!;
        Assert.That(notify.Send("READY=1"), Is.False);
    }

    [Test]
    public void Watchdog_IsWatchdogUsec_OnlyForThisProcess()
    {
        Assert.That(SystemdNotify.Watchdog(Env(("WATCHDOG_USEC", "3000000"))), Is.EqualTo(TimeSpan.FromSeconds(3)));
        Assert.That(SystemdNotify.Watchdog(Env(("WATCHDOG_USEC", "3000000"), ("WATCHDOG_PID", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture)))),
            Is.EqualTo(TimeSpan.FromSeconds(3)));
        Assert.That(SystemdNotify.Watchdog(Env(("WATCHDOG_USEC", "3000000"), ("WATCHDOG_PID", "1"))), Is.Null);
        Assert.That(SystemdNotify.Watchdog(Env(("WATCHDOG_USEC", "x"))), Is.Null);
        Assert.That(SystemdNotify.Watchdog(Env()), Is.Null);
    }
}
