// A QuickFIX (C++) initiator driven by the FIX tests: a real FIX engine that keeps its
// sequence numbers in a FileStore and validates everything it receives against the FIX 4.4
// data dictionary (UseDataDictionary=Y).
//
//   initiator CONFIG API_KEY place CLORDID QTY PRICE   logon, sell, wait for the New report,
//                                                      then vanish without a Logout
//   initiator CONFIG API_KEY collect N                  logon, wait for N ExecutionReports,
//                                                      Logout
//
// Lines on stdout: "SIGN <SendingTime>" (the test answers with the logon signature on stdin),
// "LOGON", "APP <message>", "ADMIN_IN <message>", "REJECT <message>" (a Reject or
// BusinessMessageReject QuickFIX sent: something it received was invalid), "DONE".
// Messages are printed with '|' for SOH.

#include <quickfix/Application.h>
#include <quickfix/FileLog.h>
#include <quickfix/FileStore.h>
#include <quickfix/MessageCracker.h>
#include <quickfix/Session.h>
#include <quickfix/SessionSettings.h>
#include <quickfix/SocketInitiator.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <unistd.h>

namespace {

std::mutex out_lock;

void say(const std::string& kind, const std::string& text) {
  std::lock_guard<std::mutex> guard(out_lock);
  std::string line = text;
  for (auto& c : line) {
    if (c == '\x01') c = '|';
  }
  std::cout << kind << (line.empty() ? "" : " ") << line << std::endl;
}

class Client : public FIX::Application {
 public:
  Client(std::string api_key, std::string mode, std::string clordid, std::string qty,
         std::string price, int wanted)
      : api_key_(std::move(api_key)), mode_(std::move(mode)), clordid_(std::move(clordid)),
        qty_(std::move(qty)), price_(std::move(price)), wanted_(wanted) {}

  std::atomic<bool> done{false};

  void onCreate(const FIX::SessionID&) override {}

  void onLogon(const FIX::SessionID& id) override {
    say("LOGON", "");
    if (mode_ != "place") return;
    FIX::Message order;
    order.getHeader().setField(FIX::MsgType("D"));
    order.setField(FIX::ClOrdID(clordid_));
    order.setField(FIX::Symbol("BTC-USD"));
    order.setField(FIX::Side('2'));
    order.setField(FIX::TransactTime());
    order.setField(FIX::OrderQty(std::stod(qty_)));
    order.setField(FIX::OrdType('2'));
    order.setField(FIX::Price(std::stod(price_)));
    order.setField(FIX::TimeInForce('1'));
    FIX::Session::sendToTarget(order, id);
  }

  void onLogout(const FIX::SessionID&) override {}

  void toAdmin(FIX::Message& message, const FIX::SessionID&) override {
    const std::string type = message.getHeader().getField(FIX::FIELD::MsgType);
    if (type == "A") {
      // The logon signature covers SendingTime exactly as sent: QuickFIX has set it already.
      const std::string sent = message.getHeader().getField(FIX::FIELD::SendingTime);
      say("SIGN", sent);
      std::string signature;
      std::getline(std::cin, signature);
      message.setField(FIX::Username(api_key_));
      message.setField(FIX::RawDataLength(static_cast<int>(signature.size())));
      message.setField(FIX::RawData(signature));
    } else if (type == "3" || type == "j") {
      say("REJECT", message.toString());
    }
  }

  void toApp(FIX::Message&, const FIX::SessionID&) throw(FIX::DoNotSend) override {}

  void fromAdmin(const FIX::Message& message, const FIX::SessionID&)
      throw(FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue,
            FIX::RejectLogon) override {
    const std::string type = message.getHeader().getField(FIX::FIELD::MsgType);
    if (type != "0") say("ADMIN_IN", message.toString());
  }

  void fromApp(const FIX::Message& message, const FIX::SessionID&)
      throw(FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue,
            FIX::UnsupportedMessageType) override {
    say("APP", message.toString());
    if (message.getHeader().getField(FIX::FIELD::MsgType) != "8") return;
    ++reports_;
    if (mode_ == "place" && message.isSetField(FIX::FIELD::ClOrdID) &&
        message.getField(FIX::FIELD::ClOrdID) == clordid_) {
      say("DONE", "");
      // Gone without a Logout, as a crashed client: the FileStore keeps the numbers.
      _exit(0);
    }
    if (mode_ == "collect" && reports_ >= wanted_) done = true;
  }

 private:
  std::string api_key_, mode_, clordid_, qty_, price_;
  int wanted_;
  int reports_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: initiator CONFIG API_KEY place CLORDID QTY PRICE | collect N\n";
    return 2;
  }
  const std::string mode = argv[3];
  std::string clordid, qty, price;
  int wanted = 0;
  if (mode == "place" && argc == 7) {
    clordid = argv[4];
    qty = argv[5];
    price = argv[6];
  } else if (mode == "collect" && argc == 5) {
    wanted = std::atoi(argv[4]);
  } else {
    std::cerr << "bad arguments\n";
    return 2;
  }
  try {
    FIX::SessionSettings settings(argv[1]);
    Client client(argv[2], mode, clordid, qty, price, wanted);
    FIX::FileStoreFactory store(settings);
    FIX::FileLogFactory logs(settings);
    FIX::SocketInitiator initiator(client, store, settings, logs);
    initiator.start();
    for (int i = 0; i < 300 && !client.done; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    initiator.stop();
    say("DONE", "");
    return client.done ? 0 : 1;
  } catch (const std::exception& exc) {
    std::cerr << "initiator: " << exc.what() << "\n";
    return 3;
  }
}
